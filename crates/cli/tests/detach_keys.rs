//! `--detach-keys` and the client config's `detachKeys`, typed in a real
//! terminal: tmux (with a server of the test's own) runs `run -it`,
//! `attach`, `start -ai` and `exec -it`, types the keys, and the test
//! checks that they detach (exit 0, the container still running), that
//! docker's default ctrl-p ctrl-q then reaches the container, and that
//! invalid keys are refused in one line with exit 125 before anything is
//! created.
#![allow(clippy::disallowed_macros)]

mod container_support;
mod tmux_support;

use std::path::Path;
use std::time::Duration;

use container_support::Kontti;
use tmux_support::{Tmux, wait_file};

/// A shell line that runs kontti `args` with `env` set, then writes its
/// exit code to `exit_file` and stays (so that tmux keeps the window).
fn shell_line(k: &Kontti, env: &str, args: &str, exit_file: &Path) -> String {
    format!(
        "env {env} {} --root {} {args}; echo $? > {}; sleep 60",
        env!("CARGO_BIN_EXE_kontti"),
        k.root().display(),
        exit_file.display()
    )
}

/// The environment that points the client config at `dir` (and kontti's
/// own config at a file that does not exist).
fn config_env(dir: &Path) -> String {
    format!(
        "DOCKER_CONFIG={} KONTTI_AUTH_FILE={}",
        dir.display(),
        dir.join("no-kontti-auth.json").display()
    )
}

#[test]
fn detach_keys_flag_detaches_run_attach_start_and_exec_under_tmux() {
    let k = Kontti::new();
    let cfg = k.dir.path().join("client");
    std::fs::create_dir_all(&cfg).unwrap();
    let env = config_env(&cfg);
    let tmux = Tmux {
        socket: k.dir.path().join("tmux.sock"),
    };
    let cg = k.cgroup_parent.clone();

    // run -it --detach-keys ctrl-x,x: ctrl-p ctrl-q goes through
    let exit = k.dir.path().join("exit-run");
    tmux.session(&shell_line(
        &k,
        &env,
        &format!("run -it --name dk --network none --cgroup-parent {cg} --detach-keys ctrl-x,x busybox sh"),
        &exit,
    ));
    tmux.wait_lines("/ #", 1);
    // the container's terminal must not eat ctrl-q as XON
    tmux.keys(&["stty -ixon; cat -v", "Enter"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.keys(&["C-p", "C-q", "Enter"]);
    tmux.wait_lines("^P^Q", 1);
    tmux.keys(&["C-d"]);
    // an x alone, and a ctrl-x followed by another key, are typed through
    tmux.keys(&["echo x-alone", "Enter"]);
    tmux.wait_lines("x-alone", 1);
    tmux.keys(&["echo still-$((2+3))", "Enter"]);
    tmux.wait_lines("still-5", 1);
    assert!(!exit.exists(), "detached too early:\n{}", tmux.screen());
    tmux.keys(&["C-x", "x"]);
    assert_eq!(wait_file(&exit), "0\n", "{}", tmux.screen());
    assert!(tmux.screen().contains("read escape sequence"));
    assert_eq!(k.inspect("dk")["State"]["Running"], true);
    tmux.run(&["kill-session", "-t", "t"]);

    // attach --detach-keys ctrl-a,b; the shell is the same one
    let exit = k.dir.path().join("exit-attach");
    tmux.session(&shell_line(
        &k,
        &env,
        "attach --detach-keys ctrl-a,b dk",
        &exit,
    ));
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys(&["echo attached-$((3*3))", "Enter"]);
    tmux.wait_lines("attached-9", 1);
    tmux.keys(&["C-a", "b"]);
    assert_eq!(wait_file(&exit), "0\n", "{}", tmux.screen());
    assert_eq!(k.inspect("dk")["State"]["Running"], true);
    tmux.run(&["kill-session", "-t", "t"]);

    // exec -it --detach-keys ctrl-e: the exec'd shell keeps running
    let exit = k.dir.path().join("exit-exec");
    tmux.session(&shell_line(
        &k,
        &env,
        "exec -it --detach-keys ctrl-e dk sh -c 'echo in-exec; sleep 300'",
        &exit,
    ));
    tmux.wait_lines("in-exec", 1);
    tmux.keys(&["C-e"]);
    assert_eq!(wait_file(&exit), "0\n", "{}", tmux.screen());
    let ps = k.ok(&["exec", "dk", "ps", "-o", "args"]);
    assert!(ps.contains("sleep 300"), "{ps}");
    tmux.run(&["kill-session", "-t", "t"]);

    // start -ai --detach-keys ctrl-y of a created -it container
    k.ok(&[
        "create",
        "-it",
        "--name",
        "st",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        "busybox",
        "sh",
    ]);
    let exit = k.dir.path().join("exit-start");
    tmux.session(&shell_line(
        &k,
        &env,
        "start -ai --detach-keys ctrl-y st",
        &exit,
    ));
    tmux.wait_lines("/ #", 1);
    tmux.keys(&["C-y"]);
    assert_eq!(wait_file(&exit), "0\n", "{}", tmux.screen());
    assert_eq!(k.inspect("st")["State"]["Running"], true);
    tmux.run(&["kill-session", "-t", "t"]);

    drop(tmux);
    k.finish();
}

#[test]
fn detach_keys_from_the_client_config_and_invalid_keys_refused() {
    let k = Kontti::new();
    let cfg = k.dir.path().join("client");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("config.json"), r#"{"detachKeys": "ctrl-],z"}"#).unwrap();
    let env = config_env(&cfg);
    let tmux = Tmux {
        socket: k.dir.path().join("tmux.sock"),
    };
    let cg = k.cgroup_parent.clone();

    // the config's keys detach; the default ones do not
    let exit = k.dir.path().join("exit-run");
    tmux.session(&shell_line(
        &k,
        &env,
        &format!("run -it --name cf --network none --cgroup-parent {cg} busybox sh"),
        &exit,
    ));
    tmux.wait_lines("/ #", 1);
    tmux.keys(&["C-p", "C-q"]);
    tmux.keys(&["echo still-$((4+4))", "Enter"]);
    tmux.wait_lines("still-8", 1);
    assert!(!exit.exists(), "ctrl-p ctrl-q detached:\n{}", tmux.screen());
    tmux.keys(&["C-]", "z"]);
    assert_eq!(wait_file(&exit), "0\n", "{}", tmux.screen());
    assert_eq!(k.inspect("cf")["State"]["Running"], true);
    tmux.run(&["kill-session", "-t", "t"]);

    // the flag wins over the config
    let exit = k.dir.path().join("exit-attach");
    tmux.session(&shell_line(
        &k,
        &env,
        "attach --detach-keys ctrl-b cf",
        &exit,
    ));
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys(&["echo again-$((5+5))", "Enter"]);
    tmux.wait_lines("again-10", 1);
    tmux.keys(&["C-b"]);
    assert_eq!(wait_file(&exit), "0\n", "{}", tmux.screen());
    tmux.run(&["kill-session", "-t", "t"]);
    drop(tmux);

    // invalid keys: one line, exit 125, nothing created or attached
    let with_env = |args: &[&str], config: &Path| {
        let mut c = k.cmd();
        c.env("DOCKER_CONFIG", config)
            .env("KONTTI_AUTH_FILE", config.join("no-kontti-auth.json"))
            .args(args);
        c.output().unwrap()
    };
    let good = k.dir.path().join("good");
    std::fs::create_dir_all(&good).unwrap();
    for (args, what) in [
        (
            vec!["run", "-it", "--detach-keys", "ctrl-1", "busybox", "sh"],
            "invalid --detach-keys \"ctrl-1\": unknown key \"ctrl-1\"",
        ),
        (
            vec!["run", "-d", "--detach-keys", "ctrl-p,,x", "busybox"],
            "unknown key \"\"",
        ),
        (
            vec!["attach", "--detach-keys", "alt-x", "cf"],
            "unknown key \"alt-x\"",
        ),
        (
            vec!["exec", "-it", "--detach-keys", "XY", "cf", "true"],
            "unknown key \"XY\"",
        ),
        (
            vec!["start", "-ai", "--detach-keys", "ctrl-", "cf"],
            "unknown key \"ctrl-\"",
        ),
    ] {
        let out = with_env(&args, &good);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
    }
    let bad = k.dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("config.json"),
        r#"{"detachKeys": "ctrl-p,ctrl-Q"}"#,
    )
    .unwrap();
    let out = with_env(&["run", "-it", "busybox", "sh"], &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("invalid detachKeys \"ctrl-p,ctrl-Q\""),
        "{err}"
    );
    assert!(
        err.contains(&bad.join("config.json").display().to_string()),
        "{err}"
    );
    let names = k.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(names, "cf\n", "a refused run created a container");
    k.finish();
}
