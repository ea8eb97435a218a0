//! `kontti build` of single-stage Dockerfiles with the real binary: every
//! instruction, the image config, layer contents and whiteouts, COPY/ADD
//! options, reproducible layers, exports.
#![allow(clippy::disallowed_macros)]

mod build_support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use build_support::Kontti;

#[test]
fn instructions_make_the_config_and_the_filesystem() {
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        r#"FROM busybox
ARG GREETING=hello
ENV APP=/app NAME=world
WORKDIR $APP
COPY hello.txt ./
RUN echo "$GREETING $NAME" > greeting.txt && rm /etc/hostname && mkdir -p /opq/x && touch /opq/x/f
RUN rm -rf /opq && mkdir /opq && touch /opq/new
SHELL ["/bin/sh", "-ec"]
RUN ["/bin/sh", "-c", "id -u > /app/uid"]
USER user
RUN id -u > /tmp/user-uid
USER root
EXPOSE 8080 53/udp
LABEL org.example.name="demo app"
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --retries=3 CMD wget -q localhost || exit 1
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/greeting.txt"]
ONBUILD RUN echo triggered > /onbuild.txt
MAINTAINER someone
"#,
        &[("hello.txt", "hi\n")],
    );
    let (id, err) = k.build_ok(
        &ctx,
        &["-t", "demo:1", "-t", "demo:latest", "--label", "extra=yes"],
    );
    assert!(id.starts_with("sha256:"), "{id}");
    assert!(err.contains("RUN echo"), "progress shows steps: {err}");
    let cfg = k.config("demo:1");
    assert_eq!(k.image("demo:latest").id().to_string(), id);
    let c = cfg.config.clone().unwrap();
    let env = c.env.clone().unwrap();
    assert!(env.contains(&"APP=/app".to_string()) && env.contains(&"NAME=world".to_string()));
    assert!(
        !env.iter().any(|e| e.starts_with("GREETING")),
        "ARG is not in the config: {env:?}"
    );
    assert_eq!(c.working_dir.as_deref(), Some("/app"));
    assert_eq!(c.user.as_deref(), Some("root"));
    assert_eq!(c.entrypoint.clone().unwrap(), ["/bin/sh", "-c"]);
    assert_eq!(c.cmd.clone().unwrap(), ["cat /app/greeting.txt"]);
    let ports: Vec<String> = c.exposed_ports.clone().unwrap().into_keys().collect();
    assert_eq!(ports, ["53/udp", "8080/tcp"]);
    let labels = c.labels.clone().unwrap();
    assert_eq!(labels["org.example.name"], "demo app");
    assert_eq!(labels["extra"], "yes");
    assert!(c.volumes.clone().unwrap().contains_key("/data"));
    assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    let h = c.healthcheck.clone().unwrap();
    assert_eq!(
        h.test.unwrap(),
        ["CMD-SHELL", "wget -q localhost || exit 1"]
    );
    assert_eq!(h.interval, Some(30_000_000_000));
    assert_eq!(h.retries, Some(3));
    assert_eq!(c.shell.clone().unwrap(), ["/bin/sh", "-ec"]);
    assert_eq!(
        c.on_build.clone().unwrap(),
        ["RUN echo triggered > /onbuild.txt"]
    );
    assert_eq!(cfg.author.as_deref(), Some("someone"));
    assert!(cfg.history.iter().any(|h| h.empty_layer == Some(true)));

    let fs_root = k.flatten("demo:1");
    let r = fs_root.path();
    assert_eq!(fs::read_to_string(r.join("app/hello.txt")).unwrap(), "hi\n");
    assert_eq!(
        fs::read_to_string(r.join("app/greeting.txt")).unwrap(),
        "hello world\n"
    );
    assert_eq!(fs::read_to_string(r.join("app/uid")).unwrap(), "0\n");
    assert_eq!(
        fs::read_to_string(r.join("tmp/user-uid")).unwrap(),
        "1000\n"
    );
    assert!(
        !r.join("etc/hostname").exists(),
        "rm in a RUN removes the file"
    );
    assert!(r.join("opq/new").exists() && !r.join("opq/x").exists());
    assert!(!r.join("proc").read_dir().unwrap().any(|_| true));

    // The rm is a whiteout; the recreated directory is opaque.
    let wh_layer = k.layer_entries("demo:1", 3);
    assert!(
        wh_layer.contains(&"etc/.wh.hostname".to_string()),
        "{wh_layer:?}"
    );
    let opq_layer = k.layer_entries("demo:1", 4);
    assert!(
        opq_layer.contains(&"opq/.wh..wh..opq".to_string()),
        "{opq_layer:?}"
    );
    let mut sorted = opq_layer.clone();
    sorted.sort();
    assert_eq!(opq_layer, sorted, "layer entries are sorted");
    k.assert_clean();
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let k = Kontti::new();
    let parent = k.context(
        "parent",
        "FROM busybox\nONBUILD RUN echo triggered > /onbuild.txt\n",
        &[],
    );
    k.build_ok(&parent, &["-t", "parent"]);
    let child = k.context("child", "FROM parent\nRUN cat /onbuild.txt\n", &[]);
    let (_, err) = k.build_ok(&child, &["-t", "child"]);
    assert!(err.contains("triggered"), "{err}");
    assert_eq!(k.config("child").config.unwrap().on_build, None);
    let r = k.flatten("child");
    assert_eq!(
        fs::read_to_string(r.path().join("onbuild.txt")).unwrap(),
        "triggered\n"
    );
    k.assert_clean();
}

#[test]
fn copy_globs_chown_chmod_and_add_of_a_tar() {
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        "FROM busybox\n\
         COPY *.txt /globbed/\n\
         COPY --chown=user:extra --chmod=600 dir /owned\n\
         COPY --chown=1234 a.txt /numeric.txt\n\
         ADD archive.tar /unpacked/\n\
         ADD archive.tar.gz /unpacked-gz\n\
         COPY <<EOF /from-heredoc.txt\nline one\nEOF\n\
         COPY dir/sub/deep.txt /single\n\
         COPY --chmod=u+x,go-r a.txt /symbolic\n\
         COPY --exclude=*.md --exclude=dir/sub . /filtered/\n\
         COPY --parents dir/sub/deep.txt a.txt /par/\n",
        &[
            ("a.txt", "a"),
            ("b.txt", "b"),
            ("c.md", "c"),
            ("dir/x", "x"),
            ("dir/sub/deep.txt", "deep"),
        ],
    );
    let src = k.dir.path().join("tarsrc");
    fs::create_dir_all(src.join("inner")).unwrap();
    fs::write(src.join("inner/file"), "in a tar").unwrap();
    for (name, flag) in [("archive.tar", "-cf"), ("archive.tar.gz", "-czf")] {
        let st = std::process::Command::new("tar")
            .arg("-C")
            .arg(&src)
            .arg(flag)
            .arg(ctx.join(name))
            .arg("inner")
            .status()
            .unwrap();
        assert!(st.success());
    }
    k.build_ok(&ctx, &["-t", "copies"]);
    let r = k.flatten("copies");
    let r = r.path();
    assert!(r.join("globbed/a.txt").exists() && r.join("globbed/b.txt").exists());
    assert!(!r.join("globbed/c.md").exists());
    let md = fs::metadata(r.join("owned/x")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.permissions().mode() & 0o777),
        (1000, 2000, 0o600)
    );
    assert_eq!(
        fs::read_to_string(r.join("owned/sub/deep.txt")).unwrap(),
        "deep"
    );
    let md = fs::metadata(r.join("numeric.txt")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 1234));
    assert_eq!(
        fs::read_to_string(r.join("unpacked/inner/file")).unwrap(),
        "in a tar"
    );
    assert_eq!(
        fs::read_to_string(r.join("unpacked-gz/inner/file")).unwrap(),
        "in a tar"
    );
    assert_eq!(
        fs::read_to_string(r.join("from-heredoc.txt")).unwrap(),
        "line one\n"
    );
    assert_eq!(fs::read_to_string(r.join("single")).unwrap(), "deep");
    let md = fs::metadata(r.join("symbolic")).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o700);
    assert!(r.join("filtered/a.txt").exists() && r.join("filtered/dir/x").exists());
    assert!(!r.join("filtered/c.md").exists() && !r.join("filtered/dir/sub").exists());
    assert_eq!(
        fs::read_to_string(r.join("par/dir/sub/deep.txt")).unwrap(),
        "deep"
    );
    assert_eq!(fs::read_to_string(r.join("par/a.txt")).unwrap(), "a");
    k.assert_clean();
}

#[test]
fn add_of_an_unreachable_url_names_the_url() {
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        "FROM busybox\nADD http://127.0.0.1:1/file.txt /f\n",
        &[],
    );
    let err = k.build_fails(&ctx, &["-t", "url"], 5);
    assert!(err.contains("http://127.0.0.1:1/file.txt"), "{err}");
    assert!(k.run(&["image", "inspect", "url"]).status.code() != Some(0));
    k.assert_clean();
}

#[test]
fn layers_are_reproducible_with_source_date_epoch_and_zstd_works() {
    let k = Kontti::new();
    let df = "FROM busybox\nCOPY f /f\nRUN echo x > /x && touch /y\n";
    let one = k.context("one", df, &[("f", "same")]);
    let two = k.context("two", df, &[("f", "same")]);
    let build = |ctx: &std::path::Path, tag: &str| {
        let mut c = k.cmd();
        c.env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "-q", "--no-cache", "-t", tag])
            .arg(ctx);
        let out = k.run_cmd(c);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let a = build(&one, "repro:a");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = build(&two, "repro:b");
    assert_eq!(a, b, "same inputs and epoch give the same image id");
    let created = k.config("repro:a").created.unwrap();
    assert_eq!(created, "2023-11-14T22:13:20Z");
    for tar in k.layer_tars("repro:a").iter().skip(1) {
        for e in tar::Archive::new(tar.as_slice()).entries().unwrap() {
            assert!(e.unwrap().header().mtime().unwrap() <= 1_700_000_000);
        }
    }
    let zctx = k.context("z", "FROM busybox\nRUN echo z > /z\n", &[]);
    k.build_ok(&zctx, &["-t", "zstd", "--compression", "zstd"]);
    let top = k.image("zstd").layers().last().unwrap().media_type.clone();
    assert_eq!(top, "application/vnd.oci.image.layer.v1.tar+zstd");
    let r = k.flatten("zstd");
    assert_eq!(fs::read_to_string(r.path().join("z")).unwrap(), "z\n");
    k.assert_clean();
}

#[test]
fn output_writes_oci_and_docker_archives() {
    let k = Kontti::new();
    let ctx = k.context("ctx", "FROM busybox\nRUN echo x > /x\n", &[]);
    let oci = k.dir.path().join("out.oci.tar");
    let docker = k.dir.path().join("out.docker.tar");
    k.build_ok(
        &ctx,
        &[
            "-t",
            "exp:1",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
        ],
    );
    k.build_ok(
        &ctx,
        &[
            "-t",
            "exp:1",
            "-o",
            &format!("type=docker,dest={}", docker.display()),
        ],
    );
    let names = |p: &std::path::Path| -> Vec<String> {
        let data = fs::read(p).unwrap();
        tar::Archive::new(data.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert!(names(&oci).iter().any(|n| n == "index.json"));
    assert!(names(&docker).iter().any(|n| n == "manifest.json"));
    // A second store loads the docker archive.
    let other = Kontti::new();
    other.ok(&["load", "-i", docker.to_str().unwrap()]);
    assert!(other.image("exp:1").layers().len() == 2);
    k.assert_clean();
}

#[test]
fn dockerfile_from_stdin_and_from_outside_the_context() {
    use std::io::Write;
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        "FROM busybox\nRUN echo wrong > /which\n",
        &[("f", "x")],
    );
    let mut c = k.cmd();
    c.args(["build", "-q", "-t", "stdin", "-f", "-"])
        .arg(&ctx)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    k.pids.borrow_mut().push(child.id());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FROM busybox\nCOPY f /f\nRUN echo stdin > /which\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = k.flatten("stdin");
    assert_eq!(
        fs::read_to_string(r.path().join("which")).unwrap(),
        "stdin\n"
    );
    assert_eq!(fs::read_to_string(r.path().join("f")).unwrap(), "x");

    let outside = k.dir.path().join("elsewhere.Dockerfile");
    fs::write(&outside, "FROM busybox\nRUN echo outside > /which\n").unwrap();
    k.build_ok(&ctx, &["-t", "outside", "-f", outside.to_str().unwrap()]);
    let r = k.flatten("outside");
    assert_eq!(
        fs::read_to_string(r.path().join("which")).unwrap(),
        "outside\n"
    );
    k.assert_clean();
}

#[test]
fn workdir_is_created_for_the_user_in_effect() {
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        "FROM busybox\nWORKDIR /rootdir\nUSER user\nWORKDIR /userdir/sub\nRUN touch mine\n",
        &[],
    );
    k.build_ok(&ctx, &["-t", "wd"]);
    let r = k.flatten("wd");
    let owner = |p: &str| {
        let md = fs::metadata(r.path().join(p)).unwrap();
        (md.uid(), md.gid())
    };
    assert_eq!(owner("rootdir"), (0, 0));
    assert_eq!(owner("userdir"), (1000, 1000));
    assert_eq!(owner("userdir/sub"), (1000, 1000));
    assert_eq!(owner("userdir/sub/mine"), (1000, 1000));
    k.assert_clean();
}
