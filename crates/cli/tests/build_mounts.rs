//! `RUN --mount` (secret, cache, bind), `RUN --network=none` and heredocs
//! with the real binary; a secret never lands in a layer, the config or a
//! cache record.
#![allow(clippy::disallowed_macros)]

mod build_support;

use std::fs;
use std::path::Path;

use build_support::Kontti;

const SECRET: &str = "s3cr3t-Value-9f1e";

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every file under `dir` that contains `needle`.
fn grep_tree(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                stack.push(p);
            } else if md.is_file() && fs::read(&p).is_ok_and(|data| contains(&data, needle)) {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

#[test]
fn secrets_are_mounted_but_never_stored() {
    let k = Kontti::new();
    let secret = k.dir.path().join("token");
    fs::write(&secret, SECRET).unwrap();
    let ctx = k.context(
        "ctx",
        // The Dockerfile checks the secret's length and an infix, never
        // its whole text (which would then be in the history).
        &format!(
            "FROM busybox\n\
             RUN --mount=type=secret,id=tok test \"$(wc -c < /run/secrets/tok)\" = {len} && grep -q Value /run/secrets/tok && echo file-ok > /ok1\n\
             RUN --mount=type=secret,id=tok,env=TOK test ${{#TOK}} = {len} && echo env-ok > /ok2\n\
             RUN --mount=type=secret,id=absent echo optional secrets may be missing\n",
            len = SECRET.len()
        ),
        &[],
    );
    let arg = format!("id=tok,src={}", secret.display());
    k.build_ok(&ctx, &["-t", "sec", "--secret", &arg]);
    let r = k.flatten("sec");
    assert_eq!(
        fs::read_to_string(r.path().join("ok1")).unwrap(),
        "file-ok\n"
    );
    assert_eq!(
        fs::read_to_string(r.path().join("ok2")).unwrap(),
        "env-ok\n"
    );
    assert!(
        !r.path().join("run/secrets").exists(),
        "the mount point is not in the image"
    );
    for (i, tar) in k.layer_tars("sec").iter().enumerate() {
        assert!(!contains(tar, SECRET), "layer {i} holds the secret");
        assert!(
            !contains(tar, "run/secrets"),
            "layer {i} holds the secret's mount point"
        );
    }
    let leaks = grep_tree(&k.root(), SECRET);
    assert!(leaks.is_empty(), "the secret is stored in {leaks:?}");

    // The key does not depend on the secret's content.
    fs::write(&secret, "another-value-entirely").unwrap();
    let out = k.build(&ctx, &["-t", "sec", "--secret", &arg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RUN --mount=type=secret,id=tok test") && err.contains("(cached)"),
        "{err}"
    );

    // A required secret that is not given fails clearly.
    let req = k.context(
        "req",
        "FROM busybox\nRUN --mount=type=secret,id=needed,required cat /run/secrets/needed\n",
        &[],
    );
    let err = k.build_fails(&req, &["-t", "req"], 5);
    assert!(err.contains("secret \"needed\" is required"), "{err}");
    k.assert_clean();
}

#[test]
fn run_without_net_sees_only_loopback_and_default_shares_the_host() {
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        "FROM busybox\n\
         RUN --network=none ls /sys/class/net > /none.txt\n\
         RUN ls /sys/class/net > /default.txt\n",
        &[],
    );
    k.build_ok(&ctx, &["-t", "net"]);
    let r = k.flatten("net");
    assert_eq!(
        fs::read_to_string(r.path().join("none.txt")).unwrap(),
        "lo\n"
    );
    let host: usize = fs::read_dir("/sys/class/net").unwrap().count();
    let seen = fs::read_to_string(r.path().join("default.txt")).unwrap();
    assert_eq!(seen.lines().count(), host, "{seen}");
    k.assert_clean();
}

#[test]
fn cache_and_bind_mounts() {
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        "FROM busybox\n\
         RUN --mount=type=cache,target=/var/cache/app echo run >> /var/cache/app/log && wc -l < /var/cache/app/log > /runs\n\
         RUN --mount=type=bind,source=data,target=/mnt cat /mnt/file > /copied\n\
         RUN --mount=type=bind,source=data,target=/mnt,rw echo scribble > /mnt/file\n",
        &[("data/file", "bound content\n")],
    );
    k.build_ok(&ctx, &["-t", "m"]);
    k.build_ok(&ctx, &["-t", "m", "--no-cache"]);
    let r = k.flatten("m");
    assert_eq!(
        fs::read_to_string(r.path().join("runs")).unwrap().trim(),
        "2",
        "the cache mount persists"
    );
    assert!(
        !r.path().join("var/cache/app/log").exists(),
        "a cache mount is not in the layer"
    );
    assert_eq!(
        fs::read_to_string(r.path().join("copied")).unwrap(),
        "bound content\n"
    );
    assert_eq!(
        fs::read_to_string(ctx.join("data/file")).unwrap(),
        "bound content\n",
        "writes to a rw bind mount are discarded"
    );
    // The bound files are part of the key.
    fs::write(ctx.join("data/file"), "changed content\n").unwrap();
    k.build_ok(&ctx, &["-t", "m"]);
    let r = k.flatten("m");
    assert_eq!(
        fs::read_to_string(r.path().join("copied")).unwrap(),
        "changed content\n"
    );
    k.assert_clean();
}

#[test]
fn heredocs_in_run_and_copy() {
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        "FROM busybox\n\
         ENV WHO=world\n\
         RUN <<EOF\n\
         echo one > /h1\n\
         echo two >> /h1\n\
         EOF\n\
         RUN cat <<EOT > /h2\n\
         hello $WHO\n\
         EOT\n\
         RUN <<'EOF'\n\
         #!/bin/sh\n\
         echo \"$0 script\" > /h3\n\
         EOF\n",
        &[],
    );
    k.build_ok(&ctx, &["-t", "here"]);
    let r = k.flatten("here");
    assert_eq!(
        fs::read_to_string(r.path().join("h1")).unwrap(),
        "one\ntwo\n"
    );
    assert_eq!(
        fs::read_to_string(r.path().join("h2")).unwrap(),
        "hello world\n"
    );
    assert!(
        fs::read_to_string(r.path().join("h3"))
            .unwrap()
            .ends_with("script\n")
    );
    k.assert_clean();
}

#[test]
fn run_steps_get_hosts_and_resolv_conf_without_them_entering_layers() {
    let k = Kontti::new();
    let resolv = k.dir.path().join("resolv.conf");
    // A resolver address nothing listens on: the test resolves nothing.
    fs::write(&resolv, "nameserver 127.0.0.153\n").unwrap();
    let ctx = k.context(
        "ctx",
        "FROM busybox\nRUN cat /etc/hosts > /hosts.txt && cat /etc/resolv.conf > /resolv.txt\n\
         RUN --network=none test ! -s /etc/resolv.conf && echo none > /none.txt\n",
        &[],
    );
    let mut c = k.cmd();
    c.env("KONTTI_BUILD_RESOLV_CONF", &resolv)
        .args(["build", "-q", "-t", "names"])
        .arg(&ctx);
    let out = k.run_cmd(c);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = k.flatten("names");
    assert!(
        fs::read_to_string(r.path().join("hosts.txt"))
            .unwrap()
            .contains("127.0.0.1\tlocalhost")
    );
    assert_eq!(
        fs::read_to_string(r.path().join("resolv.txt")).unwrap(),
        "nameserver 127.0.0.153\n"
    );
    assert!(r.path().join("none.txt").exists());
    assert!(!r.path().join("etc/hosts").exists() && !r.path().join("etc/resolv.conf").exists());
    for n in [-2, -1] {
        let entries = k.layer_entries("names", n);
        assert!(
            !entries.iter().any(|e| e.starts_with("etc")),
            "a RUN layer holds {entries:?}"
        );
    }
    k.assert_clean();
}

#[test]
fn locked_cache_mounts_serialise_parallel_stages() {
    let k = Kontti::new();
    let step = "RUN --mount=type=cache,id=shared,target=/c,sharing=locked \
                test ! -e /c/busy && touch /c/busy && sleep 1 && rm /c/busy && echo ok > /done";
    let ctx = k.context(
        "ctx",
        &format!(
            "FROM busybox AS a\n{step}\nFROM busybox AS b\n{step}\n\
             FROM busybox\nCOPY --from=a /done /a\nCOPY --from=b /done /b\n"
        ),
        &[],
    );
    k.build_ok(&ctx, &["-t", "locked"]);
    let r = k.flatten("locked");
    assert!(r.path().join("a").exists() && r.path().join("b").exists());
    k.assert_clean();
}
