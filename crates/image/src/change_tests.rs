use super::*;

fn applied(changes: &[&str]) -> Result<ImageConfig, ChangeError> {
    let mut config = ImageConfig {
        env: Some(vec!["PATH=/usr/bin:/bin".into()]),
        ..ImageConfig::default()
    };
    let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    apply_changes(&mut config, &changes)?;
    Ok(config)
}

#[test]
fn every_allowed_instruction_edits_the_config() {
    let c = applied(&[
        "ENV APP=/srv NAME=demo",
        "WORKDIR $APP",
        "WORKDIR data",
        "CMD [\"serve\", \"--port\", \"80\"]",
        "ENTRYPOINT /bin/run",
        "EXPOSE 80 53/UDP",
        "LABEL org.example.name=$NAME other=\"two words\"",
        "USER 1000:1000",
        "VOLUME /data /cache",
        "STOPSIGNAL SIGINT",
    ])
    .unwrap();
    assert_eq!(
        c.env.unwrap(),
        vec!["PATH=/usr/bin:/bin", "APP=/srv", "NAME=demo"]
    );
    assert_eq!(c.working_dir.as_deref(), Some("/srv/data"));
    // CMD set by an earlier change survives a later ENTRYPOINT.
    assert_eq!(c.cmd.unwrap(), vec!["serve", "--port", "80"]);
    assert_eq!(c.entrypoint.unwrap(), vec!["/bin/sh", "-c", "/bin/run"]);
    let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
    assert_eq!(ports, vec!["53/udp", "80/tcp"]);
    let labels = c.labels.unwrap();
    assert_eq!(labels["org.example.name"], "demo");
    assert_eq!(labels["other"], "two words");
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    let vols: Vec<_> = c.volumes.unwrap().into_keys().collect();
    assert_eq!(vols, vec!["/cache", "/data"]);
    assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
}

#[test]
fn entrypoint_alone_clears_cmd() {
    let mut config = ImageConfig {
        cmd: Some(vec!["/bin/sh".into()]),
        ..ImageConfig::default()
    };
    apply_changes(&mut config, &["ENTRYPOINT [\"/bin/app\"]".into()]).unwrap();
    assert_eq!(config.cmd, None);
    assert_eq!(config.entrypoint.unwrap(), vec!["/bin/app"]);
}

#[test]
fn bad_changes_are_refused_with_the_change_named() {
    for (change, want) in [
        ("RUN rm -rf /", "RUN cannot be applied to an image config"),
        ("COPY a b", "COPY cannot be applied"),
        ("FROM busybox", "invalid --change"),
        ("", "empty"),
        ("CMD x\nRUN y", "one instruction per --change"),
        ("BOGUS x", "invalid --change \"BOGUS x\""),
        ("EXPOSE", "invalid --change"),
        ("WORKDIR ${NOPE:?is required}", "invalid --change"),
    ] {
        let err = applied(&[change]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(want), "{change:?}: {msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }
}
