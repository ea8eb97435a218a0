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
    let ctx = k.context(
        "ctx",
        "FROM busybox AS a\nRUN sleep 2 && echo a > /a\n\
         FROM busybox AS b\nRUN sleep 2 && echo b > /b\n\
         FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
        &[],
    );
    let start = Instant::now();
    k.build_ok(&ctx, &["-t", "par"]);
    let took = start.elapsed();
    println!(
        "two independent 2 s stages built in {} ms",
        took.as_millis()
    );
    assert!(
        took.as_millis() < 3800,
        "stages ran one after the other: {took:?}"
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
