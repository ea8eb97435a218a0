//! What the parser makes of valid Dockerfiles.

use std::collections::BTreeMap;

use kontti_build::{
    ArgSources, BaseImage, CommandForm, CopySource, Healthcheck, Instruction, MountType,
    NetworkMode, ParseOptions, StepEnv, parse,
};

fn ok(src: &str) -> kontti_build::Dockerfile {
    match parse(src, &ParseOptions::default()) {
        Ok(df) => df,
        Err(e) => panic!("{e}"),
    }
}

fn instructions(src: &str) -> Vec<Instruction> {
    ok(src)
        .stages
        .remove(0)
        .instructions
        .into_iter()
        .map(|n| n.instruction)
        .collect()
}

#[test]
fn run_shell_exec_and_json_fallback() {
    let i = instructions(
        "FROM a\nRUN echo hi\nRUN [\"ls\", \"-l\"]\nRUN [not json\nCMD [\"a\"] trailing\n",
    );
    assert!(
        matches!(&i[0], Instruction::Run(r) if r.command == CommandForm::Shell("echo hi".into()))
    );
    assert!(
        matches!(&i[1], Instruction::Run(r) if r.command == CommandForm::Exec(vec!["ls".into(), "-l".into()]))
    );
    assert!(
        matches!(&i[2], Instruction::Run(r) if r.command == CommandForm::Shell("[not json".into()))
    );
    assert_eq!(
        i[3],
        Instruction::Cmd(CommandForm::Shell("[\"a\"] trailing".into()))
    );
}

#[test]
fn run_flags() {
    let i = instructions(
        "FROM a\nRUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=tok,required \\\n    --network=none make\n",
    );
    let Instruction::Run(r) = &i[0] else {
        panic!("not RUN")
    };
    assert_eq!(r.mounts.len(), 2);
    assert_eq!(r.mounts[1].kind, MountType::Secret);
    assert!(r.mounts[1].required);
    assert_eq!(r.network, Some(NetworkMode::None));
    assert_eq!(r.command, CommandForm::Shell("make".into()));
}

#[test]
fn heredocs() {
    let src = "FROM a\nRUN <<EOF\necho one\necho two\nEOF\nRUN <<-'A' cat && 3<<\"B\" cat\n\tline $X\n\tA\nb\nB\nCOPY <<conf /etc/app.conf\nkey=$V\nconf\nUSER me\n";
    let df = ok(src);
    let nodes = &df.stages[0].instructions;
    let Instruction::Run(r) = &nodes[0].instruction else {
        panic!("RUN")
    };
    assert_eq!(r.command, CommandForm::Shell("<<EOF".into()));
    assert_eq!(r.heredocs[0].content, "echo one\necho two\n");
    assert!(r.heredocs[0].expand);
    assert_eq!(nodes[0].span.end_line, 5);
    let Instruction::Run(r) = &nodes[1].instruction else {
        panic!("RUN")
    };
    assert_eq!(r.heredocs.len(), 2);
    assert_eq!(r.heredocs[0].content, "line $X\n");
    assert!(r.heredocs[0].strip_tabs && !r.heredocs[0].expand);
    assert_eq!(r.heredocs[1].fd, Some(3));
    assert_eq!(r.heredocs[1].content, "b\n");
    let Instruction::Copy(c) = &nodes[2].instruction else {
        panic!("COPY")
    };
    assert!(
        matches!(&c.sources[0], CopySource::Heredoc(h) if h.name == "conf" && h.content == "key=$V\n")
    );
    assert_eq!(c.dest, "/etc/app.conf");
    assert_eq!(nodes[3].instruction, Instruction::User("me".into()));
    assert_eq!(nodes[3].span.start.line, 14);
}

#[test]
fn escape_directive_backtick() {
    let i = instructions(
        "# escape=`\nFROM a\nRUN dir C:\\ `\n    && echo done\nCOPY C:\\src C:\\dst\n",
    );
    assert_eq!(
        i[0],
        Instruction::Run(run_shell("dir C:\\     && echo done"))
    );
    assert!(matches!(&i[1], Instruction::Copy(c) if c.dest == "C:\\dst"));
}

fn run_shell(s: &str) -> kontti_build::Run {
    kontti_build::Run {
        command: CommandForm::Shell(s.into()),
        heredocs: vec![],
        mounts: vec![],
        network: None,
        security: None,
    }
}

#[test]
fn env_forms_and_expansion() {
    let df = ok("FROM a\nENV A=1 B=\"two words\" C=$A\nENV LEGACY some value here\n");
    let nodes = &df.stages[0].instructions;
    let empty = BTreeMap::new();
    let src = ArgSources {
        build_args: &empty,
        meta_args: &empty,
    };
    let mut env = StepEnv::default();
    for n in nodes {
        env.apply(&n.instruction, src, '\\').expect("apply");
    }
    assert_eq!(
        env.env,
        vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two words".to_string()),
            ("C".to_string(), String::new()),
            ("LEGACY".to_string(), "some value here".to_string()),
        ]
    );
}

#[test]
fn arg_before_from_is_only_for_from() {
    let src = "ARG BASE=busybox\nARG TAG=1.36\nFROM ${BASE}:${TAG} AS one\nARG TAG\nRUN echo $BASE $TAG\n";
    let df = ok(src);
    assert_eq!(df.stages[0].base, BaseImage::Image("busybox:1.36".into()));
    let sources = ArgSources {
        build_args: &df.build_args,
        meta_args: &df.meta_args,
    };
    let mut env = StepEnv::default();
    for n in &df.stages[0].instructions {
        env.apply(&n.instruction, sources, '\\').expect("apply");
    }
    assert_eq!(
        kontti_build::expand_word("$BASE|$TAG", '\\', &env).expect("expand"),
        "|1.36"
    );

    let mut opts = ParseOptions::default();
    opts.build_args.insert("BASE".into(), "alpine".into());
    let df = parse(src, &opts).expect("parses");
    assert_eq!(df.stages[0].base, BaseImage::Image("alpine:1.36".into()));
}

#[test]
fn automatic_platform_args_in_from() {
    let opts = ParseOptions {
        build_platform: Some("linux/amd64".into()),
        target_platform: Some("linux/arm64".into()),
        ..ParseOptions::default()
    };
    let df = parse(
        "FROM --platform=$BUILDPLATFORM busybox AS b\nFROM busybox-$TARGETARCH\n",
        &opts,
    )
    .expect("parses");
    assert_eq!(df.stages[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(df.stages[1].base, BaseImage::Image("busybox-arm64".into()));
}

#[test]
fn copy_and_add_flags() {
    let i = instructions(
        "FROM a\nCOPY --from=build --chown=1:2 --chmod=0644 --link --exclude=*.md a b /dst/\nADD --checksum=sha256:00 --keep-git-dir=true https://x/y.tar /z\nCOPY [\"with space\", \"/d\"]\n",
    );
    let Instruction::Copy(c) = &i[0] else {
        panic!("COPY")
    };
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("1:2"));
    assert_eq!(c.chmod.as_deref(), Some("0644"));
    assert!(c.link && !c.parents);
    assert_eq!(c.exclude, vec!["*.md"]);
    assert_eq!(
        c.sources,
        vec![CopySource::Path("a".into()), CopySource::Path("b".into())]
    );
    let Instruction::Add(a) = &i[1] else {
        panic!("ADD")
    };
    assert!(a.keep_git_dir);
    assert_eq!(a.checksum.as_deref(), Some("sha256:00"));
    let Instruction::Copy(c) = &i[2] else {
        panic!("COPY")
    };
    assert_eq!(c.sources, vec![CopySource::Path("with space".into())]);
}

#[test]
fn healthcheck_onbuild_and_others() {
    let i = instructions(
        "FROM a\nHEALTHCHECK --interval=30s --timeout=3s --start-period=1m --start-interval=2s --retries=3 CMD [\"wget\", \"-q\", \"localhost\"]\nHEALTHCHECK NONE\nONBUILD COPY . /src\nMAINTAINER someone\nVOLUME /a /b\nVOLUME [\"/c\"]\nEXPOSE 80 53/udp\nSTOPSIGNAL SIGINT\nSHELL [\"/bin/ash\", \"-c\"]\nLABEL a=b \"c d\"=e\n",
    );
    let Instruction::Healthcheck(Healthcheck::Cmd(h)) = &i[0] else {
        panic!("HEALTHCHECK")
    };
    assert_eq!(h.interval, Some(std::time::Duration::from_secs(30)));
    assert_eq!(h.start_period, Some(std::time::Duration::from_secs(60)));
    assert_eq!(h.retries, Some(3));
    assert_eq!(i[1], Instruction::Healthcheck(Healthcheck::None));
    assert!(
        matches!(&i[2], Instruction::Onbuild(n) if matches!(n.instruction, Instruction::Copy(_)))
    );
    assert_eq!(i[4], Instruction::Volume(vec!["/a".into(), "/b".into()]));
    assert_eq!(i[5], Instruction::Volume(vec!["/c".into()]));
    assert_eq!(
        i[6],
        Instruction::Expose(vec!["80".into(), "53/udp".into()])
    );
    let Instruction::Label(l) = &i[9] else {
        panic!("LABEL")
    };
    assert_eq!(l[1].key, "\"c d\"");
}

#[test]
fn expanded_instruction() {
    let df = ok(
        "FROM a\nENV DIR=/app NAME=x\nWORKDIR $DIR\nCOPY --chown=$NAME ${NAME}.txt $DIR/\nRUN echo $DIR\n",
    );
    let nodes = &df.stages[0].instructions;
    let empty = BTreeMap::new();
    let src = ArgSources {
        build_args: &empty,
        meta_args: &empty,
    };
    let mut env = StepEnv::default();
    env.apply(&nodes[0].instruction, src, '\\').expect("apply");
    assert_eq!(
        nodes[1].instruction.expanded(&env, '\\').expect("x"),
        Instruction::Workdir("/app".into())
    );
    let Instruction::Copy(c) = nodes[2].instruction.expanded(&env, '\\').expect("x") else {
        panic!("COPY")
    };
    assert_eq!((c.chown.as_deref(), c.dest.as_str()), (Some("x"), "/app/"));
    assert_eq!(c.sources, vec![CopySource::Path("x.txt".into())]);
    assert_eq!(
        nodes[3].instruction.expanded(&env, '\\').expect("x"),
        nodes[3].instruction
    );
}

#[test]
fn stage_graph_target_and_groups() {
    let src = "\
FROM busybox AS deps
FROM busybox AS tools
FROM deps AS build
COPY --from=tools /bin/x /bin/x
FROM busybox AS unused
FROM scratch
COPY --from=build /out /
RUN --mount=type=bind,from=deps,target=/d true
";
    let df = ok(src);
    assert_eq!(df.stages[2].base, BaseImage::Stage(0));
    assert_eq!(df.stages[2].depends_on, vec![0, 1]);
    assert_eq!(df.stages[4].base, BaseImage::Scratch);
    assert_eq!(df.stages[4].depends_on, vec![0, 2]);
    let plan = df.plan(None).expect("plan");
    assert_eq!(plan.target, 4);
    assert_eq!(plan.groups, vec![vec![0, 1], vec![2], vec![4]]);
    let plan = df.plan(Some("BUILD")).expect("plan");
    assert_eq!(plan.groups, vec![vec![0, 1], vec![2]]);
    assert_eq!(plan.stages().collect::<Vec<_>>(), vec![0, 1, 2]);
}

#[test]
fn copy_from_index_and_image() {
    let df = ok("FROM a\nFROM b\nCOPY --from=0 /x /x\nCOPY --from=nginx:latest /y /y\n");
    assert_eq!(df.stages[1].depends_on, vec![0]);
}

#[test]
fn copy_from_arg() {
    let df = ok("FROM a AS src\nFROM b\nARG FROM_STAGE=src\nCOPY --from=$FROM_STAGE /x /x\n");
    assert_eq!(df.stages[1].depends_on, vec![0]);
}

#[test]
fn comments_blank_lines_crlf_and_bom() {
    let df = ok(
        "\u{feff}# syntax=docker/dockerfile:1\r\n\r\n# a comment\r\nFROM a\r\n  # indented comment\r\nRUN echo # not a comment\r\n",
    );
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(
        df.stages[0].instructions[0].instruction,
        Instruction::Run(run_shell("echo # not a comment"))
    );
    assert_eq!(df.stages[0].instructions[0].span.start.line, 6);
}
