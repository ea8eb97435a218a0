//! `kontti run -it` in a real terminal: tmux (with a server of the test's
//! own) types into the container's shell, resizes the window, presses
//! ctrl-c, and reads the exit code.
#![allow(clippy::disallowed_macros)]

mod container_support;
mod tmux_support;

use std::time::{Duration, Instant};

use container_support::Kontti;
use tmux_support::{Tmux, wait_file};

#[test]
fn run_it_under_tmux_types_resizes_interrupts_and_exits() {
    let k = Kontti::new();
    let tmux = Tmux {
        socket: k.dir.path().join("tmux.sock"),
    };
    let exit_file = k.dir.path().join("exit");
    let command = format!(
        "{} --root {} run -it --rm --network none --cgroup-parent {} busybox sh; echo $? > {}; sleep 60",
        env!("CARGO_BIN_EXE_kontti"),
        k.root().display(),
        k.cgroup_parent,
        exit_file.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "80",
        "-y",
        "24",
        &command,
    ]);
    tmux.wait_lines("/ #", 1);

    tmux.keys(&["echo typed-$((6*7))", "Enter"]);
    tmux.wait_lines("typed-42", 1);

    tmux.keys(&["stty size", "Enter"]);
    tmux.wait_lines("24 80", 1);
    tmux.run(&["resize-window", "-t", "t", "-x", "100", "-y", "30"]);
    // the resize reaches the container's terminal (SIGWINCH forwarded)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tmux.keys(&["stty size", "Enter"]);
        std::thread::sleep(Duration::from_millis(200));
        if tmux.screen().lines().any(|l| l.trim_end() == "30 100") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "resize not seen:\n{}",
            tmux.screen()
        );
    }

    tmux.keys(&["sleep 100", "Enter"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.keys(&["C-c"]);
    tmux.keys(&["echo after-$((1+1))", "Enter"]);
    let screen = tmux.wait_lines("after-2", 1);
    assert!(screen.contains("^C"), "{screen}");

    tmux.keys(&["exit 7", "Enter"]);
    assert_eq!(wait_file(&exit_file), "7\n");
    tmux.run(&["kill-session", "-t", "t"]);

    // ctrl-p ctrl-q detaches; the container keeps running
    let exit_file = k.dir.path().join("exit-detach");
    let command = format!(
        "{} --root {} run -it --name det --network none --cgroup-parent {} busybox sh; echo $? > {}; sleep 60",
        env!("CARGO_BIN_EXE_kontti"),
        k.root().display(),
        k.cgroup_parent,
        exit_file.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "80",
        "-y",
        "24",
        &command,
    ]);
    tmux.wait_lines("/ #", 1);
    tmux.keys(&["C-p", "C-q"]);
    assert_eq!(wait_file(&exit_file), "0\n");
    assert_eq!(k.inspect("det")["State"]["Running"], true);
    drop(tmux);
    k.finish();
}
