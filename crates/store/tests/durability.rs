//! Durability of the embedded store, shown with real processes.
//!
//! Both tests re-run this test binary as a child (selected by `KONTTI_STORE_CHILD`) that writes to a
//! store and prints `ACK <key>` after each acknowledged write. The parent then
//! * SIGKILLs the child repeatedly during a concurrent write load, reopens the store and checks that
//!   every acknowledged key is there with its value (`acknowledged_writes_survive_sigkill`);
//! * runs a sequential writer under strace and checks, for every ack, that the data written to the
//!   database file since the previous ack was followed by a completed fsync/fdatasync of that file
//!   before the ack was printed (`every_ack_follows_a_sync_of_its_write`). This is what makes a write
//!   survive a crash below the page cache (power loss, kernel panic) on a disk that honours fsync.

#![allow(clippy::disallowed_macros)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kontti_store::{EmbeddedOptions, EmbeddedStore, Store};

const CHILD_MODE: &str = "KONTTI_STORE_CHILD";
const CHILD_PATH: &str = "KONTTI_STORE_PATH";
const CHILD_ROUND: &str = "KONTTI_STORE_ROUND";
const STRACE: &str = "/usr/bin/strace";

fn child_command(test: &str, mode: &str, path: &Path, round: usize) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("finding the test binary")?;
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MODE, mode)
        .env(CHILD_PATH, path)
        .env(CHILD_ROUND, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    Ok(cmd)
}

/// The child's side: `writers` tasks each create keys in a loop and print an ack per write, until
/// `count` writes each are done (or 60 seconds pass, so that an orphan never lingers).
fn run_child(writers: usize, count: usize) {
    let path = PathBuf::from(std::env::var(CHILD_PATH).expect("child needs KONTTI_STORE_PATH"));
    let round = std::env::var(CHILD_ROUND).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store =
            EmbeddedStore::open(&path, EmbeddedOptions::default()).expect("child opens the store");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = store.clone();
            let round = round.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..count {
                    if Instant::now() > deadline {
                        break;
                    }
                    let key = format!("/crash/{round}/{w}/{i:06}");
                    store
                        .create(&key, key.as_bytes().to_vec())
                        .await
                        .expect("child write");
                    println!("ACK {key}");
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

/// Reads `ACK` lines from a child's stdout on a thread, so that the parent can kill at any moment.
fn ack_reader(child: &mut Child) -> anyhow::Result<mpsc::Receiver<String>> {
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The first ack shares its line with libtest's "test name ... " prefix.
            if let Some(at) = line.find("ACK ")
                && tx.send(line[at + 4..].to_owned()).is_err()
            {
                break;
            }
        }
    });
    Ok(rx)
}

#[test]
fn acknowledged_writes_survive_sigkill() -> anyhow::Result<()> {
    if std::env::var(CHILD_MODE).as_deref() == Ok("sigkill") {
        run_child(4, usize::MAX);
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.redb");
    let mut acked: Vec<String> = Vec::new();
    let mut last_revision = 0;
    let rounds = 6;
    for round in 0..rounds {
        let mut child = child_command(
            "acknowledged_writes_survive_sigkill",
            "sigkill",
            &path,
            round,
        )?
        .spawn()?;
        let acks = ack_reader(&mut child)?;
        // Kill at a different point of the load each round.
        let target = 200 + round * 137;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut this_round = 0;
        while this_round < target {
            match acks.recv_timeout(Duration::from_secs(1)) {
                Ok(key) => {
                    acked.push(key);
                    this_round += 1;
                }
                Err(_) if Instant::now() < deadline => {}
                Err(_) => {
                    bail!("round {round}: child acknowledged only {this_round} writes in 30 s")
                }
            }
        }
        child.kill()?; // SIGKILL, in the middle of the write load
        child.wait()?;
        // Acks printed before the kill are acknowledged too.
        acked.extend(acks.iter());

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let store = EmbeddedStore::open(&path, EmbeddedOptions::default())?;
            for key in &acked {
                let kv = store
                    .get(key)
                    .await?
                    .with_context(|| format!("acknowledged key {key} lost"))?;
                assert_eq!(kv.value, key.as_bytes(), "value of {key}");
            }
            let revision = store.current_revision().await?;
            assert!(
                revision >= last_revision,
                "revision went back from {last_revision} to {revision}"
            );
            assert!(
                revision as usize >= acked.len(),
                "revision {revision} below {} acked creates",
                acked.len()
            );
            last_revision = revision;
            anyhow::Ok(())
        })?;
    }
    eprintln!(
        "{} acknowledged writes over {rounds} SIGKILLs all survived",
        acked.len()
    );
    Ok(())
}

/// One syscall of interest from an strace log, in log order.
#[derive(Debug, PartialEq)]
enum Traced {
    DbWrite,
    DbSyncDone,
    Ack(String),
}

/// Parses `strace -f -y` output into the events the durability check needs.
fn parse_trace(log: &str, db_file: &str) -> Vec<Traced> {
    let sync_names = ["fsync(", "fdatasync(", "sync_file_range(", "msync("];
    let write_names = ["pwrite64(", "pwritev(", "pwritev2(", "write("];
    let mut pending_sync: BTreeMap<String, ()> = BTreeMap::new();
    let mut out = Vec::new();
    for line in log.lines() {
        let (pid, body) = match line.strip_prefix("[pid ") {
            Some(rest) => rest.split_once("] ").map_or(("", rest), |(p, b)| (p, b)),
            None => match line.split_once(' ') {
                Some((p, b)) if p.chars().all(|c| c.is_ascii_digit()) => (p, b),
                _ => ("", line),
            },
        };
        let body = body.trim_start();
        if let Some(rest) = body.strip_prefix("<... ") {
            // Completion of a call that another thread's output interrupted.
            if sync_names
                .iter()
                .any(|n| rest.starts_with(&n[..n.len() - 1]))
                && pending_sync.remove(pid).is_some()
            {
                out.push(Traced::DbSyncDone);
            }
            continue;
        }
        let on_db = body.contains(db_file);
        if sync_names.iter().any(|n| body.starts_with(n)) && on_db {
            if body.contains("<unfinished ...>") {
                pending_sync.insert(pid.to_owned(), ());
            } else if body.contains(") = 0") {
                out.push(Traced::DbSyncDone);
            }
        } else if write_names.iter().any(|n| body.starts_with(n)) {
            if on_db {
                out.push(Traced::DbWrite);
            } else if let Some(start) = body.find("\"ACK ") {
                let key = body[start + 5..]
                    .split("\\n")
                    .next()
                    .unwrap_or("")
                    .to_owned();
                out.push(Traced::Ack(key));
            }
        }
    }
    out
}

/// Checks that before every ack, the database writes since the previous ack were synced.
fn check_each_ack_synced(events: &[Traced]) -> Result<usize, String> {
    let mut acks = 0;
    let mut unsynced_write = false;
    let mut wrote_since_ack = false;
    for event in events {
        match event {
            Traced::DbWrite => {
                unsynced_write = true;
                wrote_since_ack = true;
            }
            Traced::DbSyncDone => unsynced_write = false,
            Traced::Ack(key) => {
                if !wrote_since_ack {
                    return Err(format!(
                        "ack of {key} with no write to the database file since the previous ack"
                    ));
                }
                if unsynced_write {
                    return Err(format!(
                        "ack of {key} before its write to the database file was synced"
                    ));
                }
                wrote_since_ack = false;
                acks += 1;
            }
        }
    }
    Ok(acks)
}

#[test]
fn every_ack_follows_a_sync_of_its_write() -> anyhow::Result<()> {
    const WRITES: usize = 40;
    if std::env::var(CHILD_MODE).as_deref() == Ok("strace") {
        // One writer, so that every database write between two acks belongs to the second ack.
        run_child(1, WRITES);
        return Ok(());
    }
    assert!(
        Path::new(STRACE).exists(),
        "{STRACE} is missing: install Debian's strace (scripts/install-deps.sh does)"
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.redb");
    let trace = dir.path().join("trace.log");
    let child = child_command("every_ack_follows_a_sync_of_its_write", "strace", &path, 0)?;
    let mut cmd = Command::new(STRACE);
    cmd.args(["-f", "-y", "-qq", "-s", "200", "-e"])
        .arg("trace=fsync,fdatasync,msync,sync_file_range,write,pwrite64,pwritev,pwritev2")
        .arg("-o")
        .arg(&trace)
        .arg(child.get_program())
        .args(child.get_args())
        .envs(child.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let output = cmd.output().context("running the writer under strace")?;
    assert!(
        output.status.success(),
        "traced writer failed: {}",
        output.status
    );
    let printed = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains("ACK "))
        .count();
    assert_eq!(printed, WRITES, "the writer acknowledged every write");

    let log = std::fs::read_to_string(&trace)?;
    let db_file = path.to_string_lossy().into_owned();
    let events = parse_trace(&log, &db_file);
    let syncs = events.iter().filter(|e| **e == Traced::DbSyncDone).count();
    match check_each_ack_synced(&events) {
        Ok(acks) => assert_eq!(acks, WRITES, "every ack appears in the trace"),
        Err(problem) => panic!("{problem}\ntrace:\n{log}"),
    }
    assert!(
        syncs >= WRITES,
        "at least one sync per sequential write ({syncs} syncs)"
    );
    eprintln!(
        "{WRITES} acks, each after a completed sync of its write ({syncs} syncs of {db_file})"
    );
    Ok(())
}

#[test]
fn the_sync_check_rejects_an_ack_before_the_sync() {
    use Traced::*;
    let good = [
        DbWrite,
        DbWrite,
        DbSyncDone,
        Ack("a".into()),
        DbWrite,
        DbSyncDone,
        Ack("b".into()),
    ];
    assert_eq!(check_each_ack_synced(&good), Ok(2));
    let early = [DbWrite, DbSyncDone, DbWrite, Ack("a".into()), DbSyncDone];
    assert!(
        check_each_ack_synced(&early)
            .unwrap_err()
            .contains("before its write")
    );
    let nothing_written = [DbWrite, DbSyncDone, Ack("a".into()), Ack("b".into())];
    assert!(
        check_each_ack_synced(&nothing_written)
            .unwrap_err()
            .contains("no write")
    );
    let log = "12 pwrite64(3</t/store.redb>, \"x\", 1, 0) = 1\n\
               [pid 13] fdatasync(3</t/store.redb> <unfinished ...>\n\
               [pid 12] write(1<pipe:[9]>, \"ACK /k/1\\n\", 9) = 9\n\
               [pid 13] <... fdatasync resumed>) = 0\n";
    let parsed = parse_trace(log, "/t/store.redb");
    assert_eq!(parsed, [DbWrite, Ack("/k/1".into()), DbSyncDone]);
    assert!(
        check_each_ack_synced(&parsed).is_err(),
        "an ack while the sync is still running is too early"
    );
}
