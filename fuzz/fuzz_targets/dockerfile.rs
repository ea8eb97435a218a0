//! Arbitrary bytes through the Dockerfile parser, the stage planner and
//! variable expansion: none of them may panic.
#![no_main]

use kontti_build::{ArgSources, ParseOptions, StepEnv, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(df) = parse(&text, &ParseOptions::default()) else { return };
    let _ = df.plan(None);
    let sources = ArgSources { build_args: &df.build_args, meta_args: &df.meta_args };
    for stage in &df.stages {
        let _ = df.plan(stage.name.as_deref());
        let mut env = StepEnv::default();
        for node in &stage.instructions {
            let _ = env.apply(&node.instruction, sources, df.directives.escape);
            let _ = node.instruction.expanded(&env, df.directives.escape);
        }
    }
});
