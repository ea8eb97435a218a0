//! One test per kind of Dockerfile error, checking the exact message and the
//! line and column it points at.

use kontti_build::{ParseOptions, parse};

fn err(src: &str) -> String {
    match parse(src, &ParseOptions::default()) {
        Ok(df) => panic!("expected an error, parsed {} stages", df.stages.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_instruction_suggests_nearest() {
    assert_eq!(
        err("FROM busybox\n  RUNN echo hi\n"),
        "Dockerfile:2:3: unknown instruction: RUNN (did you mean RUN?)"
    );
    assert_eq!(
        err("FROM busybox\nFOOBARBAZ x\n"),
        "Dockerfile:2:1: unknown instruction: FOOBARBAZ"
    );
}

#[test]
fn file_name_is_the_callers() {
    let opts = ParseOptions {
        file_name: "build/Containerfile".into(),
        ..ParseOptions::default()
    };
    let e = parse("FROM a\nCOPPY x y\n", &opts).expect_err("error");
    assert_eq!(
        e.to_string(),
        "build/Containerfile:2:1: unknown instruction: COPPY (did you mean COPY?)"
    );
    assert_eq!(e.kind(), kontti_core::ErrorKind::Invalid);
}

#[test]
fn missing_arguments() {
    assert_eq!(
        err("FROM a\nWORKDIR\n"),
        "Dockerfile:2:1: WORKDIR requires at least one argument"
    );
    assert_eq!(
        err("FROM a\n RUN --network=none\n"),
        "Dockerfile:2:2: RUN requires at least one argument"
    );
}

#[test]
fn copy_without_destination() {
    assert_eq!(
        err("FROM a\nCOPY onlyone\n"),
        "Dockerfile:2:1: COPY requires at least two arguments (sources and a destination), but only one was provided"
    );
}

#[test]
fn from_argument_count() {
    assert_eq!(
        err("FROM a b\n"),
        "Dockerfile:1:1: FROM requires either one or three arguments (FROM image [AS name])"
    );
}

#[test]
fn chown_on_run_is_an_unknown_flag() {
    assert_eq!(
        err("FROM a\nRUN --chown=1:1 echo hi\n"),
        "Dockerfile:2:5: unknown flag: --chown (not valid for RUN)"
    );
    assert_eq!(
        err("FROM a\nADD --from=b x y\n"),
        "Dockerfile:2:5: unknown flag: --from (not valid for ADD)"
    );
}

#[test]
fn duplicate_flag() {
    assert_eq!(
        err("FROM a\nCOPY --from=x --from=y a b\n"),
        "Dockerfile:2:15: duplicate flag specified: --from"
    );
}

#[test]
fn unknown_mount_type() {
    assert_eq!(
        err("FROM a\nRUN --mount=type=nfs,target=/x true\n"),
        "Dockerfile:2:5: invalid --mount: unsupported mount type \"nfs\" (use bind, cache, tmpfs, secret or ssh)"
    );
}

#[test]
fn bad_mount_option_points_at_the_flag_across_continuations() {
    assert_eq!(
        err("FROM a\nRUN --network=none \\\n    --mount=type=cache,target=/c,colour=red true\n"),
        "Dockerfile:3:5: invalid --mount: unexpected key \"colour\" in \"colour=red\""
    );
}

#[test]
fn bad_network_mode() {
    assert_eq!(
        err("FROM a\nRUN --network=bridge true\n"),
        "Dockerfile:2:5: invalid value for flag --network: unsupported network mode \"bridge\" (use none, default or host)"
    );
}

#[test]
fn bad_bool_flag() {
    assert_eq!(
        err("FROM a\nCOPY --link=maybe a b\n"),
        "Dockerfile:2:6: invalid value for flag --link: expecting a boolean value, not \"maybe\""
    );
}

#[test]
fn bad_chmod() {
    assert_eq!(
        err("FROM a\nCOPY --chmod=999 a b\n"),
        "Dockerfile:2:6: invalid value for flag --chmod: \"999\" is not an octal or symbolic mode"
    );
}

#[test]
fn json_array_of_non_strings() {
    assert_eq!(
        err("FROM a\nCMD [\"echo\", 1]\n"),
        "Dockerfile:2:5: when using JSON array syntax, arrays must be comprised of strings only"
    );
}

#[test]
fn shell_needs_json() {
    assert_eq!(
        err("FROM a\nSHELL /bin/sh -c\n"),
        "Dockerfile:2:7: SHELL requires the arguments to be in JSON form"
    );
}

#[test]
fn env_without_equals() {
    assert_eq!(
        err("FROM a\nENV A=1 B\n"),
        "Dockerfile:2:9: syntax error - can't find = in \"B\"; ENV must be of the form: name=value"
    );
    assert_eq!(
        err("FROM a\nLABEL lonely\n"),
        "Dockerfile:2:1: LABEL requires two arguments in the form LABEL NAME VALUE, or NAME=VALUE pairs"
    );
}

#[test]
fn blank_names() {
    assert_eq!(
        err("FROM a\nENV =x\n"),
        "Dockerfile:2:5: ENV names can not be blank"
    );
    assert_eq!(
        err("FROM a\nARG a=1 =2\n"),
        "Dockerfile:2:9: ARG names can not be blank"
    );
}

#[test]
fn unterminated_heredoc() {
    assert_eq!(
        err("FROM a\nRUN cat <<EOF\nhello\nEOS\n"),
        "Dockerfile:2:9: unterminated heredoc \"EOF\": no line \"EOF\" before the end of the file"
    );
}

#[test]
fn bad_escape_directive() {
    assert_eq!(
        err("# escape=x\nFROM a\n"),
        "Dockerfile:1:1: invalid escape token \"x\": it must be \\ or `"
    );
}

#[test]
fn duplicate_directive() {
    assert_eq!(
        err("# escape=`\n# escape=\\\nFROM a\n"),
        "Dockerfile:2:1: only one escape parser directive can be used"
    );
}

#[test]
fn instruction_before_from() {
    assert_eq!(
        err("ARG V=1\nRUN true\nFROM a\n"),
        "Dockerfile:2:1: RUN is not allowed before the first FROM (no build stage in current context)"
    );
}

#[test]
fn empty_file_and_no_from() {
    assert_eq!(
        err("# just a comment\n\n"),
        "Dockerfile: file with no instructions"
    );
    assert_eq!(
        err("ARG A=1\n"),
        "Dockerfile: the file has no FROM instruction: nothing to build"
    );
}

#[test]
fn bad_stage_name() {
    assert_eq!(
        err("FROM a AS 1st\n"),
        "Dockerfile:1:11: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
    );
}

#[test]
fn duplicate_stage_name() {
    assert_eq!(
        err("FROM a AS b\nFROM c AS B\n"),
        "Dockerfile:2:11: duplicate stage name \"b\""
    );
}

#[test]
fn unknown_stage_index() {
    assert_eq!(
        err("FROM a\nFROM b\n  COPY --from=5 /x /y\n"),
        "Dockerfile:3:3: unknown stage \"5\""
    );
}

#[test]
fn unknown_target_stage() {
    let df = parse("FROM a AS one\n", &ParseOptions::default()).expect("parses");
    let e = df.plan(Some("two")).expect_err("unknown target");
    assert_eq!(e.to_string(), "Dockerfile: unknown stage \"two\"");
}

#[test]
fn stage_cycle() {
    assert_eq!(
        err("FROM b AS a\nFROM a AS b\n"),
        "Dockerfile:2:1: stage cycle: a -> b -> a"
    );
    assert_eq!(
        err("FROM x AS a\nRUN true\nCOPY --from=a /x /y\n"),
        "Dockerfile:3:1: stage cycle: a -> a"
    );
}

#[test]
fn onbuild_onbuild() {
    assert_eq!(
        err("FROM a\nONBUILD ONBUILD RUN x\n"),
        "Dockerfile:2:9: ONBUILD isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        err("FROM a\nONBUILD FROM b\n"),
        "Dockerfile:2:9: FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        err("FROM a\nonbuild maintainer me\n"),
        "Dockerfile:2:9: MAINTAINER isn't allowed as an ONBUILD trigger"
    );
}

#[test]
fn onbuild_trigger_errors_point_into_the_trigger() {
    assert_eq!(
        err("FROM a\nONBUILD RUN --chown=1 x\n"),
        "Dockerfile:2:13: unknown flag: --chown (not valid for RUN)"
    );
}

#[test]
fn healthcheck_errors() {
    assert_eq!(
        err("FROM a\nHEALTHCHECK PING x\n"),
        "Dockerfile:2:13: unknown type \"PING\" in HEALTHCHECK (try CMD or NONE)"
    );
    assert_eq!(
        err("FROM a\nHEALTHCHECK NONE x\n"),
        "Dockerfile:2:18: HEALTHCHECK NONE takes no arguments"
    );
    assert_eq!(
        err("FROM a\nHEALTHCHECK --interval=5 CMD true\n"),
        "Dockerfile:2:13: invalid value for flag --interval: \"5\" is not a duration like 30s or 1m30s"
    );
    assert_eq!(
        err("FROM a\nHEALTHCHECK --retries=-1 CMD true\n"),
        "Dockerfile:2:13: invalid value for flag --retries: \"-1\" is not a non-negative integer"
    );
}

#[test]
fn bad_port_and_signal() {
    assert_eq!(
        err("FROM a\nEXPOSE 80 http\n"),
        "Dockerfile:2:11: invalid port \"http\": expected PORT, PORT/PROTO or PORT-PORT/PROTO with tcp, udp or sctp"
    );
    assert_eq!(
        err("FROM a\nSTOPSIGNAL SIGNOPE\n"),
        "Dockerfile:2:12: invalid signal \"SIGNOPE\": expected a name like SIGTERM or a number from 1 to 64"
    );
}

#[test]
fn empty_volume() {
    assert_eq!(
        err("FROM a\nVOLUME [\"\"]\n"),
        "Dockerfile:2:8: VOLUME specified can not be an empty string"
    );
}

#[test]
fn expansion_errors_in_from() {
    assert_eq!(
        err("ARG B\nFROM ${B:?required}\n"),
        "Dockerfile:2:6: B: required"
    );
    assert_eq!(
        err("FROM ${B\n"),
        "Dockerfile:1:6: missing '}' in substitution ${B"
    );
    assert_eq!(
        err("ARG B\nFROM $B\n"),
        "Dockerfile:2:6: base name ($B) should not be blank"
    );
}
