//! The build cache, with the real binary: hits run nothing, and the key
//! follows content, mode, deletions and the environment (never size and
//! mtime alone).
#![allow(clippy::disallowed_macros)]

mod build_support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use build_support::Kontti;

/// (cached, executed) filesystem steps, from the plain progress output.
fn counts(stderr: &str) -> (usize, usize) {
    let steps: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("] RUN ") || l.contains("] COPY ") || l.contains("] ADD "))
        .collect();
    let cached = steps.iter().filter(|l| l.ends_with("(cached)")).count();
    (cached, steps.len() - cached)
}

/// Writes `content` to `path` keeping its size and modification time.
fn rewrite_same_size_and_mtime(path: &Path, content: &str) {
    let before = fs::metadata(path).unwrap();
    assert_eq!(before.len(), content.len() as u64);
    let mtime = before.modified().unwrap();
    fs::write(path, content).unwrap();
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(mtime).unwrap();
    let after = fs::metadata(path).unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (before.len(), mtime)
    );
}

#[test]
fn cache_misses_on_content_mode_deletion_and_env() {
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        "FROM busybox\nENV MODE=one\nCOPY app /app\nRUN cat /app/* > /all && echo $MODE > /mode\n",
        &[("app/a", "aaaa"), ("app/b", "bbbb")],
    );
    let (first, err) = k.build_ok(&ctx, &["-t", "c"]);
    assert_eq!(counts(&err), (0, 2), "{err}");
    let (again, err) = k.build_ok(&ctx, &["-t", "c"]);
    assert_eq!(counts(&err), (2, 0), "{err}");
    assert_eq!(first, again);

    // Same size, same mtime, different content: a miss.
    rewrite_same_size_and_mtime(&ctx.join("app/a"), "AAAA");
    let (_, err) = k.build_ok(&ctx, &["-t", "c"]);
    assert_eq!(counts(&err), (0, 2), "content change: {err}");
    let r = k.flatten("c");
    assert_eq!(
        fs::read_to_string(r.path().join("all")).unwrap(),
        "AAAAbbbb"
    );

    // A mode change.
    fs::set_permissions(ctx.join("app/b"), fs::Permissions::from_mode(0o600)).unwrap();
    let (_, err) = k.build_ok(&ctx, &["-t", "c"]);
    assert_eq!(counts(&err), (0, 2), "mode change: {err}");

    // A deleted file.
    fs::remove_file(ctx.join("app/b")).unwrap();
    let (_, err) = k.build_ok(&ctx, &["-t", "c"]);
    assert_eq!(counts(&err), (0, 2), "deletion: {err}");
    let r = k.flatten("c");
    assert!(!r.path().join("app/b").exists());

    // An ENV change: every step after it misses.
    let df = fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    fs::write(ctx.join("Dockerfile"), df.replace("MODE=one", "MODE=two")).unwrap();
    let (_, err) = k.build_ok(&ctx, &["-t", "c"]);
    assert_eq!(counts(&err), (0, 2), "env change: {err}");
    let r = k.flatten("c");
    assert_eq!(fs::read_to_string(r.path().join("mode")).unwrap(), "two\n");

    // --no-cache runs everything; the build after it hits again.
    let (_, err) = k.build_ok(&ctx, &["-t", "c", "--no-cache"]);
    assert_eq!(counts(&err), (0, 2), "{err}");
    let (_, err) = k.build_ok(&ctx, &["-t", "c"]);
    assert_eq!(counts(&err), (2, 0), "{err}");
    k.assert_clean();
}

const TEN_STEPS: &str = "FROM busybox
ENV A=1
COPY one.txt /one.txt
RUN cat /one.txt > /copy1
COPY two.txt /two.txt
RUN cat /two.txt > /copy2
WORKDIR /work
RUN echo three > three
COPY three.txt /three.txt
RUN echo four > four
CMD [\"cat\", \"/copy1\"]
";

#[test]
fn unchanged_ten_step_rebuild_is_fast_and_one_change_reruns_from_its_reader() {
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        TEN_STEPS,
        &[("one.txt", "1"), ("two.txt", "2"), ("three.txt", "3")],
    );
    let (first, err) = k.build_ok(&ctx, &["-t", "ten"]);
    assert_eq!(counts(&err), (0, 7), "{err}");
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let (id, err) = k.build_ok(&ctx, &["-t", "ten"]);
        let took = start.elapsed();
        best = best.min(took);
        assert_eq!(id, first);
        assert_eq!(counts(&err), (7, 0), "{err}");
    }
    println!(
        "unchanged 10-step rebuild: {} ms (best of 3)",
        best.as_millis()
    );
    assert!(
        best < Duration::from_millis(200),
        "an unchanged rebuild took {best:?}"
    );

    // two.txt is first read by step 4 (COPY two.txt): steps before it hit,
    // it and every step after it run.
    fs::write(ctx.join("two.txt"), "22").unwrap();
    let f = fs::File::options()
        .write(true)
        .open(ctx.join("two.txt"))
        .unwrap();
    f.set_modified(SystemTime::now()).unwrap();
    let (_, err) = k.build_ok(&ctx, &["-t", "ten"]);
    let steps: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("] RUN ") || l.contains("] COPY "))
        .collect();
    assert!(
        steps[0].contains("COPY one.txt") && steps[0].ends_with("(cached)"),
        "{err}"
    );
    assert!(
        steps[1].contains("RUN cat /one.txt") && steps[1].ends_with("(cached)"),
        "{err}"
    );
    for s in &steps[2..] {
        assert!(!s.ends_with("(cached)"), "{s} should have run: {err}");
    }
    let r = k.flatten("ten");
    assert_eq!(fs::read_to_string(r.path().join("copy2")).unwrap(), "22");
    k.assert_clean();
}
