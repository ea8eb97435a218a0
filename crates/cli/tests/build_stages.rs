//! Multi-stage builds with the real binary: `FROM stage`, `COPY --from`
//! a stage, an index or an image, `--target`, only the final stage's
//! layers in the image, independent stages in parallel.
#![allow(clippy::disallowed_macros)]

mod build_support;

use std::fs;
use std::time::Instant;

use build_support::Kontti;

#[test]
fn copy_from_stages_and_images_keeps_only_the_final_layers() {
    let k = Kontti::new();
    let other = k.context(
        "other",
        "FROM busybox\nRUN echo from-image > /img.txt\n",
        &[],
    );
    k.build_ok(&other, &["-t", "other-image"]);
    let ctx = k.context(
        "ctx",
        "ARG BASE=busybox\n\
         FROM $BASE AS builder\n\
         RUN mkdir /out && echo built > /out/artifact && echo junk > /junk\n\
         FROM builder AS extended\n\
         RUN echo more >> /out/artifact\n\
         FROM scratch\n\
         COPY --from=builder /out/artifact /artifact\n\
         COPY --from=1 /out/artifact /extended\n\
         COPY --from=other-image /img.txt /img.txt\n\
         COPY --from=busybox /bin/busybox /bin/busybox\n\
         CMD [\"/bin/busybox\", \"cat\", \"/artifact\"]\n",
        &[],
    );
    k.build_ok(&ctx, &["-t", "multi"]);
    let image = k.image("multi");
    assert_eq!(
        image.layers().len(),
        4,
        "one layer per COPY of the last stage"
    );
    let r = k.flatten("multi");
    let r = r.path();
    assert_eq!(fs::read_to_string(r.join("artifact")).unwrap(), "built\n");
    assert_eq!(
        fs::read_to_string(r.join("extended")).unwrap(),
        "built\nmore\n"
    );
    assert_eq!(
        fs::read_to_string(r.join("img.txt")).unwrap(),
        "from-image\n"
    );
    assert!(r.join("bin/busybox").is_file());
    assert!(
        !r.join("junk").exists(),
        "nothing of the earlier stages but what is copied"
    );

    // --target builds a stage and what it needs.
    k.build_ok(&ctx, &["-t", "target", "--target", "extended"]);
    let r = k.flatten("target");
    assert_eq!(
        fs::read_to_string(r.path().join("out/artifact")).unwrap(),
        "built\nmore\n"
    );
    assert!(r.path().join("junk").exists());
    k.assert_clean();
}

#[test]
fn independent_stages_build_in_parallel() {
    let k = Kontti::new();
    // Each stage announces itself in a shared cache mount and waits for the
    // other: built one after the other, the first would time out.
    let step = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous,target=/rv touch /rv/{me} && i=0 && \
             while [ ! -e /rv/{other} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done && \
             test -e /rv/{other} && echo {me} > /{me}"
        )
    };
    let ctx = k.context(
        "ctx",
        &format!(
            "FROM busybox AS a\n{}\nFROM busybox AS b\n{}\n\
             FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
            step("a", "b"),
            step("b", "a")
        ),
        &[],
    );
    let start = Instant::now();
    k.build_ok(&ctx, &["-t", "par"]);
    println!(
        "two stages that wait for each other built in {} ms",
        start.elapsed().as_millis()
    );
    let r = k.flatten("par");
    assert_eq!(fs::read_to_string(r.path().join("a")).unwrap(), "a\n");
    assert_eq!(fs::read_to_string(r.path().join("b")).unwrap(), "b\n");
    k.assert_clean();
}

#[test]
fn two_builds_at_once_on_one_root() {
    let k = Kontti::new();
    let a = k.context(
        "a",
        "FROM busybox\nRUN sleep 1 && echo a > /a\nCOPY f /f\n",
        &[("f", "a")],
    );
    let b = k.context(
        "b",
        "FROM busybox\nRUN sleep 1 && echo b > /b\nCOPY f /f\n",
        &[("f", "b")],
    );
    let spawn = |ctx: &std::path::Path, tag: &str| {
        let mut c = k.cmd();
        c.args(["build", "-q", "-t", tag])
            .arg(ctx)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = c.spawn().unwrap();
        k.pids.borrow_mut().push(child.id());
        child
    };
    let (ca, cb) = (spawn(&a, "a"), spawn(&b, "b"));
    for child in [ca, cb] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        fs::read_to_string(k.flatten("a").path().join("f")).unwrap(),
        "a"
    );
    assert_eq!(
        fs::read_to_string(k.flatten("b").path().join("b")).unwrap(),
        "b\n"
    );
    k.assert_clean();
}
