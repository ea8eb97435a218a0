use super::*;

fn d(n: u8) -> Digest {
    Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
}

fn entry(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
    let mut desc = Descriptor::new(OCI_MANIFEST, d(n), 10);
    desc.platform = Some(Platform {
        architecture: arch.into(),
        os: os.into(),
        variant: variant.map(str::to_owned),
        ..Platform::default()
    });
    desc
}

fn index(manifests: Vec<Descriptor>) -> Index {
    Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        artifact_type: None,
        manifests,
        subject: None,
        annotations: BTreeMap::new(),
    }
}

#[test]
fn selects_platform_with_amd64_default_and_variants() {
    let i = index(vec![
        entry("linux", "arm", Some("v6"), 1),
        entry("linux", "arm", Some("v7"), 2),
        entry("linux", "arm64", None, 3),
        entry("linux", "amd64", None, 4),
        entry("unknown", "unknown", None, 5),
    ]);
    let amd64: PlatformSpec = "linux/amd64".parse().unwrap();
    assert_eq!(select_platform(&i, &d(9), &amd64).unwrap().digest, d(4));
    let v7: PlatformSpec = "linux/arm/v7".parse().unwrap();
    assert_eq!(select_platform(&i, &d(9), &v7).unwrap().digest, d(2));
    let arm64: PlatformSpec = "linux/arm64/v8".parse().unwrap();
    assert_eq!(select_platform(&i, &d(9), &arm64).unwrap().digest, d(3));
    if std::env::consts::ARCH == "x86_64" {
        assert_eq!(PlatformSpec::host().to_string(), "linux/amd64");
    }
}

#[test]
fn missing_platform_is_a_clear_error() {
    let i = index(vec![entry("linux", "arm64", None, 3)]);
    let want: PlatformSpec = "linux/s390x".parse().unwrap();
    let e = select_platform(&i, &d(9), &want).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("linux/s390x") && msg.contains("available: linux/arm64"),
        "{msg}"
    );
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn platform_strings_are_validated() {
    for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
        assert!(bad.parse::<PlatformSpec>().is_err(), "{bad}");
    }
    let p: PlatformSpec = "Linux/x86_64".parse().unwrap();
    assert_eq!(p.to_string(), "linux/amd64");
}

#[test]
fn parses_oci_and_docker_documents_and_refuses_unknown_types() {
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{}","size":3}},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"{}","size":5}}]}}"#,
        d(1),
        d(2)
    );
    assert!(matches!(
        parse_document(DOCKER_MANIFEST, &d(0), m.as_bytes()).unwrap(),
        Document::Manifest(_)
    ));
    assert!(matches!(
        parse_document("", &d(0), m.as_bytes()).unwrap(),
        Document::Manifest(_)
    ));
    // The document's own media type must agree with its descriptor's.
    assert!(parse_document(OCI_MANIFEST, &d(0), m.as_bytes()).is_err());
    let l = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
    assert!(matches!(
        parse_document(DOCKER_MANIFEST_LIST, &d(0), l.as_bytes()).unwrap(),
        Document::Index(_)
    ));
    let e = parse_document("application/x-unknown", &d(0), b"{}").unwrap_err();
    assert!(
        e.to_string()
            .contains("unsupported media type \"application/x-unknown\"")
    );
    let e = parse_document(DOCKER_SCHEMA1, &d(0), b"{}").unwrap_err();
    assert!(matches!(e, MediaError::UnknownMediaType { .. }));
    assert!(parse_document(OCI_MANIFEST, &d(0), b"not json").is_err());
    assert_eq!(
        media_kind(OCI_LAYER_ZSTD),
        MediaKind::Layer(Compression::Zstd)
    );
    assert_eq!(
        media_kind(DOCKER_LAYER_GZIP),
        MediaKind::Layer(Compression::Gzip)
    );
}
