//! The compatibility corpus: every `tests/dockerfiles/*/Dockerfile` parses
//! to its committed `expected.json` (the AST and the build plan).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use kontti_build::{ParseOptions, parse};

#[test]
fn corpus_matches_golden_files() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dockerfiles");
    let update = std::env::var_os("KONTTI_UPDATE_GOLDEN").is_some();
    let mut cases: Vec<_> = fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "the corpus has {} cases", cases.len());
    let mut mismatches = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = fs::read_to_string(case.join("Dockerfile"))?;
        let opts = ParseOptions {
            file_name: format!("{name}/Dockerfile"),
            build_platform: Some("linux/amd64".into()),
            ..ParseOptions::default()
        };
        let df = parse(&source, &opts).with_context(|| format!("parsing {name}"))?;
        let plan = df.plan(None)?;
        let actual = serde_json::to_string_pretty(&serde_json::json!({
            "dockerfile": df,
            "plan": { "target": plan.target, "groups": plan.groups },
        }))? + "\n";
        let golden = case.join("expected.json");
        if update {
            fs::write(&golden, &actual)?;
            continue;
        }
        let expected =
            fs::read_to_string(&golden).with_context(|| format!("reading {}", golden.display()))?;
        if expected != actual {
            mismatches.push(name);
        }
    }
    assert!(
        mismatches.is_empty(),
        "parse results differ from expected.json for: {mismatches:?}"
    );
    Ok(())
}
