//! The context walker, COPY source selection and cache keys against real
//! directories.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Result;
use kontti_build::{
    ArgSources, BuildContext, CacheKey, ContextError, Instruction, KeyValue, ParseOptions, StepEnv,
    StepInput, parse,
};

fn write(root: &Path, rel: &str, content: &str) -> Result<()> {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(p, content)?;
    Ok(())
}

fn paths(ctx: &BuildContext) -> Vec<&str> {
    ctx.entries().iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn walker_applies_dockerignore_but_always_sends_dockerfile() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n")?;
    write(
        root,
        ".dockerignore",
        "*\n!src\nsrc/**/*.tmp\n!keep/important.txt\n",
    )?;
    write(root, "README.md", "x")?;
    write(root, "src/main.rs", "fn main() {}")?;
    write(root, "src/deep/x.tmp", "tmp")?;
    write(root, "keep/important.txt", "yes")?;
    write(root, "keep/other.txt", "no")?;
    let ctx = BuildContext::open(root, "Dockerfile")?;
    assert_eq!(
        paths(&ctx),
        vec![
            ".dockerignore",
            "Dockerfile",
            "keep/important.txt",
            "src",
            "src/deep",
            "src/main.rs"
        ]
    );
    Ok(())
}

#[test]
fn sources_outside_or_missing_are_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    write(root, "a/file", "x")?;
    std::os::unix::fs::symlink("/etc/passwd", root.join("escape"))?;
    std::os::unix::fs::symlink("../../outside", root.join("a/up"))?;
    std::os::unix::fs::symlink("file", root.join("a/inside"))?;
    let ctx = BuildContext::scan(root, &Default::default(), &[])?;
    assert_eq!(
        ctx.select("../x").expect_err("outside").to_string(),
        "\"../x\": path is outside the build context"
    );
    assert!(matches!(
        ctx.select("escape"),
        Err(ContextError::Outside(_))
    ));
    assert!(matches!(ctx.select("a/up"), Err(ContextError::Outside(_))));
    assert_eq!(
        ctx.select("nope.txt").expect_err("missing").to_string(),
        "\"nope.txt\": file not found in build context or excluded by .dockerignore"
    );
    assert!(matches!(
        ctx.select("*.none"),
        Err(ContextError::NotFound(_))
    ));
    let followed: Vec<&str> = ctx
        .select("a/inside")?
        .iter()
        .map(|i| ctx.entries()[*i].path.as_str())
        .collect();
    assert_eq!(followed, vec!["a/file", "a/inside"]);
    // "/a/./file" is the context's a/file.
    assert_eq!(ctx.select("/a/./file")?.len(), 1);
    Ok(())
}

#[test]
fn globs_select_matching_entries_and_their_contents() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    write(root, "a.txt", "1")?;
    write(root, "b.txt", "2")?;
    write(root, "c.md", "3")?;
    write(root, "d.txt/inner", "4")?;
    write(root, "sub/e.txt", "5")?;
    let ctx = BuildContext::scan(root, &Default::default(), &[])?;
    let got: Vec<&str> = ctx
        .select("*.txt")?
        .iter()
        .map(|i| ctx.entries()[*i].path.as_str())
        .collect();
    assert_eq!(got, vec!["a.txt", "b.txt", "d.txt", "d.txt/inner"]);
    Ok(())
}

#[test]
fn copy_exclude_leaves_files_out_of_the_digest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write(dir.path(), "src/a.rs", "a")?;
    write(dir.path(), "src/README.md", "docs")?;
    let ctx = BuildContext::scan(dir.path(), &Default::default(), &[])?;
    let before = ctx.digest_excluding(&["src"], &["**/*.md"])?;
    assert_ne!(before, ctx.digest(&["src"])?);
    write(dir.path(), "src/README.md", "changed docs")?;
    let ctx = BuildContext::scan(dir.path(), &Default::default(), &[])?;
    assert_eq!(before, ctx.digest_excluding(&["src"], &["**/*.md"])?);
    Ok(())
}

/// A context with a few files and the key of `COPY . /app` after ENV.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Result<Fixture> {
        let dir = tempfile::tempdir()?;
        write(dir.path(), "app/main.sh", "echo hello\n")?;
        write(dir.path(), "app/lib/util.sh", "util() { :; }\n")?;
        write(dir.path(), "data.bin", "0123456789")?;
        Ok(Fixture { dir })
    }

    fn key(&self, env_value: &str) -> Result<CacheKey> {
        let src =
            format!("FROM busybox\nENV MODE={env_value}\nCOPY . /app\nRUN /app/app/main.sh\n");
        let df = parse(&src, &ParseOptions::default())?;
        let ctx = BuildContext::scan(self.dir.path(), &Default::default(), &[])?;
        let sources = ArgSources {
            build_args: &df.build_args,
            meta_args: &df.meta_args,
        };
        let mut env = StepEnv::from_image_env(&["PATH=/bin"]);
        let mut key = CacheKey::base("sha256:busybox-manifest", "linux/amd64");
        for node in &df.stages[0].instructions {
            env.apply(&node.instruction, sources, '\\')?;
            let expanded = node.instruction.expanded(&env, '\\')?;
            let inputs = match &expanded {
                Instruction::Copy(c) => {
                    let srcs: Vec<&str> = c
                        .sources
                        .iter()
                        .filter_map(|s| match s {
                            kontti_build::CopySource::Path(p) => Some(p.as_str()),
                            _ => None,
                        })
                        .collect();
                    vec![StepInput::Context(ctx.digest(&srcs)?)]
                }
                _ => vec![],
            };
            key = key.step(&expanded, &env, &inputs);
        }
        Ok(key)
    }
}

#[test]
fn cache_hit_when_nothing_changed() -> Result<()> {
    let f = Fixture::new()?;
    assert_eq!(f.key("prod")?, f.key("prod")?);
    Ok(())
}

#[test]
fn cache_miss_when_content_changes_with_same_size_and_mtime() -> Result<()> {
    let f = Fixture::new()?;
    let before = f.key("prod")?;
    let path = f.dir.path().join("data.bin");
    let mtime = fs::metadata(&path)?.modified()?;
    fs::write(&path, "9876543210")?;
    fs::File::options()
        .write(true)
        .open(&path)?
        .set_modified(mtime)?;
    let meta = fs::metadata(&path)?;
    assert_eq!((meta.len(), meta.modified()?), (10, mtime));
    assert_ne!(before, f.key("prod")?);
    Ok(())
}

#[test]
fn cache_miss_when_mode_changes() -> Result<()> {
    let f = Fixture::new()?;
    let before = f.key("prod")?;
    fs::set_permissions(
        f.dir.path().join("app/main.sh"),
        fs::Permissions::from_mode(0o755),
    )?;
    assert_ne!(before, f.key("prod")?);
    Ok(())
}

#[test]
fn cache_miss_when_owner_changes() -> Result<()> {
    kontti_testutil::require_root();
    let f = Fixture::new()?;
    let before = f.key("prod")?;
    std::os::unix::fs::chown(f.dir.path().join("app/lib/util.sh"), Some(1234), Some(1234))?;
    assert_ne!(before, f.key("prod")?);
    Ok(())
}

#[test]
fn cache_miss_when_a_file_is_deleted() -> Result<()> {
    let f = Fixture::new()?;
    let before = f.key("prod")?;
    fs::remove_file(f.dir.path().join("app/lib/util.sh"))?;
    assert_ne!(before, f.key("prod")?);
    Ok(())
}

#[test]
fn cache_miss_when_a_directory_is_added() -> Result<()> {
    let f = Fixture::new()?;
    let before = f.key("prod")?;
    fs::create_dir(f.dir.path().join("app/empty"))?;
    assert_ne!(before, f.key("prod")?);
    Ok(())
}

#[test]
fn cache_miss_when_env_changes() -> Result<()> {
    let f = Fixture::new()?;
    assert_ne!(f.key("prod")?, f.key("dev")?);
    Ok(())
}

#[test]
fn secret_content_never_reaches_the_key() -> Result<()> {
    // The key of a secret-mounting RUN depends only on the mount's options:
    // the secret's value is never an input, so changing it cannot be seen.
    let df = parse(
        "FROM a\nRUN --mount=type=secret,id=token,env=TOKEN ./deploy\n",
        &ParseOptions::default(),
    )?;
    let run = &df.stages[0].instructions[0].instruction;
    let encoded = serde_json::to_string(run)?;
    assert!(encoded.contains("\"id\":\"token\""));
    let env = StepEnv::default();
    let parent = CacheKey::base("scratch", "linux/amd64");
    assert_eq!(parent.step(run, &env, &[]), parent.step(run, &env, &[]));
    Ok(())
}

#[test]
fn build_args_in_effect_change_the_key_but_undeclared_proxies_do_not() -> Result<()> {
    let src = "FROM a\nARG VERSION=1\nRUN make\n";
    let key = |args: &[(&str, &str)]| -> Result<CacheKey> {
        let opts = ParseOptions {
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..ParseOptions::default()
        };
        let df = parse(src, &opts)?;
        let sources = ArgSources {
            build_args: &df.build_args,
            meta_args: &df.meta_args,
        };
        let mut env = StepEnv::default();
        let mut key = CacheKey::base("scratch", "linux/amd64");
        for node in &df.stages[0].instructions {
            env.apply(&node.instruction, sources, '\\')?;
            key = key.step(&node.instruction.expanded(&env, '\\')?, &env, &[]);
        }
        Ok(key)
    };
    let plain = key(&[])?;
    assert_ne!(plain, key(&[("VERSION", "2")])?);
    assert_eq!(plain, key(&[("HTTP_PROXY", "http://proxy:3128")])?);
    Ok(())
}

#[test]
fn env_step_key_uses_values_not_text() -> Result<()> {
    // `ENV A=1` and `ENV A 1` are the same step.
    let env = StepEnv::default();
    let parent = CacheKey::base("scratch", "linux/amd64");
    let a = Instruction::Env(vec![KeyValue {
        key: "A".into(),
        value: "1".into(),
    }]);
    let df = parse("FROM x\nENV A 1\n", &ParseOptions::default())?;
    let b = df.stages[0].instructions[0]
        .instruction
        .expanded(&env, '\\')?;
    assert_eq!(parent.step(&a, &env, &[]), parent.step(&b, &env, &[]));
    Ok(())
}
