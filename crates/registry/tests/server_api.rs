//! The built-in registry against the distribution spec, over real HTTP on
//! loopback: uploads (monolithic, chunked, mounts), pulls (tags, digests,
//! ranges), listings with pagination, deletes, referrers, errors and auth.
#![allow(clippy::disallowed_macros)]

use std::sync::Arc;

use kontti_image::hash::sha256 as sha256_of;
use kontti_registry::blobs::ContentBlobs;
use kontti_registry::server::{Server, ServerConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Running {
    base: String,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    http: reqwest::Client,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(htpasswd: Option<&str>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = htpasswd.map(|text| {
        let p = dir.path().join("htpasswd");
        std::fs::write(&p, text).unwrap();
        p
    });
    let storage = dir.path().join("storage");
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        storage: storage.clone(),
        tls: None,
        htpasswd,
    };
    let blobs = ContentBlobs::open(&storage, "registry", false).unwrap();
    let server = Server::bind(&config, Arc::new(blobs)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async {
        let _ = rx.await;
    }));
    Running {
        base: format!("http://{addr}"),
        dir,
        stop: Some(tx),
        http: reqwest::Client::new(),
    }
}

impl Running {
    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    async fn upload(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256_of(data).to_string();
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        d
    }

    async fn put_manifest(&self, repo: &str, reference: &str, m: &Value) -> reqwest::Response {
        self.http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Content-Type", m["mediaType"].as_str().unwrap())
            .body(serde_json::to_vec(m).unwrap())
            .send()
            .await
            .unwrap()
    }
}

async fn error_code(r: reqwest::Response) -> String {
    let v: Value = r
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    v["errors"][0]["code"].as_str().unwrap_or("").to_owned()
}

fn manifest(config: &str, config_len: usize, layers: &[(&str, usize)]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
        "layers": layers.iter().map(|(d, s)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s})).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn version_check_and_unknown_paths() {
    let r = start(None).await;
    let resp = r.http.get(r.url("/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["Docker-Distribution-API-Version"],
        "registry/2.0"
    );
    let resp = r
        .http
        .get(r.url("/v2/x/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "MANIFEST_UNKNOWN");
    let resp = r
        .http
        .get(r.url("/v2/Bad/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "NAME_INVALID");
    let resp = r.http.get(r.url("/v2/x/tags/list")).send().await.unwrap();
    assert_eq!(error_code(resp).await, "NAME_UNKNOWN");
}

#[tokio::test]
async fn push_pull_by_tag_and_digest_with_ranges() {
    let r = start(None).await;
    let layer: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let ld = r.upload("a/b", &layer).await;
    let cd = r.upload("a/b", config).await;
    let m = manifest(&cd, config.len(), &[(&ld, layer.len())]);
    let resp = r.put_manifest("a/b", "v1", &m).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let md = resp.headers()["Docker-Content-Digest"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(md, sha256_of(&serde_json::to_vec(&m).unwrap()).to_string());

    for reference in ["v1", md.as_str()] {
        let resp = r
            .http
            .get(r.url(&format!("/v2/a/b/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["Content-Type"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            resp.headers()["Docker-Content-Digest"].to_str().unwrap(),
            md
        );
        assert_eq!(resp.bytes().await.unwrap(), serde_json::to_vec(&m).unwrap());
    }
    let head = r
        .http
        .head(r.url(&format!("/v2/a/b/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["Content-Length"], "100000");
    let whole = r
        .http
        .get(r.url(&format!("/v2/a/b/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(whole.bytes().await.unwrap(), layer);
    let part = r
        .http
        .get(r.url(&format!("/v2/a/b/blobs/{ld}")))
        .header("Range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["Content-Range"], "bytes 1000-99999/100000");
    assert_eq!(part.bytes().await.unwrap(), layer[1000..]);
    // A blob of another repository is not visible here.
    let other = r
        .http
        .get(r.url(&format!("/v2/c/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(other).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_checks_ranges_and_digest() {
    let r = start(None).await;
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 13) as u8).collect();
    let d = sha256_of(&data).to_string();
    let start_resp = r
        .http
        .post(r.url("/v2/c/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(start_resp.status(), StatusCode::ACCEPTED);
    let loc = start_resp.headers()["Location"]
        .to_str()
        .unwrap()
        .to_owned();
    let p1 = r
        .http
        .patch(r.url(&loc))
        .header("Content-Range", "0-29999")
        .body(data[..30_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(p1.status(), StatusCode::ACCEPTED);
    assert_eq!(p1.headers()["Range"], "0-29999");
    // A chunk that does not continue where the upload is: 416.
    let bad = r
        .http
        .patch(r.url(&loc))
        .header("Content-Range", "40000-49999")
        .body(data[40_000..50_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let status = r.http.get(r.url(&loc)).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(status.headers()["Range"], "0-29999");
    let p2 = r
        .http
        .patch(r.url(&loc))
        .header("Content-Range", "30000-69999")
        .body(data[30_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(p2.status(), StatusCode::ACCEPTED);
    // Not visible before the closing PUT.
    let head = r
        .http
        .head(r.url(&format!("/v2/c/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    let done = r
        .http
        .put(r.url(&format!("{loc}?digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::CREATED);
    let got = r
        .http
        .get(r.url(&format!("/v2/c/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), data);
}

#[tokio::test]
async fn wrong_digest_leaves_nothing_visible() {
    let r = start(None).await;
    let claimed = sha256_of(b"something else").to_string();
    let resp = r
        .http
        .post(r.url(&format!("/v2/d/blobs/uploads/?digest={claimed}")))
        .body(b"actual content".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
    let head = r
        .http
        .head(r.url(&format!("/v2/d/blobs/{claimed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    let blobs = r.dir.path().join("storage/blobs/sha256");
    assert_eq!(
        std::fs::read_dir(&blobs).unwrap().count(),
        0,
        "no blob entered the store"
    );
    let uploads = r.dir.path().join("storage/uploads");
    assert_eq!(
        std::fs::read_dir(&uploads).unwrap().count(),
        0,
        "the staged upload was removed"
    );
    // A manifest whose blobs are missing is refused.
    let m = manifest(&claimed, 3, &[]);
    let resp = r.put_manifest("d", "v1", &m).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "MANIFEST_BLOB_UNKNOWN");
    // A manifest pushed by digest must have that digest.
    let resp = r.put_manifest("d", &claimed, &m).await;
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn mounts_tags_catalog_pagination_and_deletes() {
    let r = start(None).await;
    let layer = b"shared layer".to_vec();
    let config = b"{}".to_vec();
    let ld = r.upload("src", &layer).await;
    let cd = r.upload("src", &config).await;
    let mount = r
        .http
        .post(r.url(&format!("/v2/dst/blobs/uploads/?mount={ld}&from=src")))
        .send()
        .await
        .unwrap();
    assert_eq!(mount.status(), StatusCode::CREATED);
    // Mounting from a repository without the blob starts an upload instead.
    let no = r
        .http
        .post(r.url(&format!("/v2/dst/blobs/uploads/?mount={ld}&from=nothing")))
        .send()
        .await
        .unwrap();
    assert_eq!(no.status(), StatusCode::ACCEPTED);
    let cm = r
        .http
        .post(r.url(&format!("/v2/dst/blobs/uploads/?mount={cd}&from=src")))
        .send()
        .await
        .unwrap();
    assert_eq!(cm.status(), StatusCode::CREATED);
    let m = manifest(&cd, config.len(), &[(&ld, layer.len())]);
    for t in ["a", "b", "c", "d", "e"] {
        assert_eq!(
            r.put_manifest("dst", t, &m).await.status(),
            StatusCode::CREATED
        );
    }
    let page = r
        .http
        .get(r.url("/v2/dst/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    let link = page.headers()["Link"].to_str().unwrap().to_owned();
    assert_eq!(link, "</v2/dst/tags/list?n=2&last=b>; rel=\"next\"");
    let v: Value = page
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    assert_eq!(v["tags"], json!(["a", "b"]));
    let v: Value = r
        .http
        .get(r.url("/v2/dst/tags/list?n=2&last=d"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    assert_eq!(v["tags"], json!(["e"]));
    r.upload("zzz/last", b"x").await;
    let v: Value = r
        .http
        .get(r.url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    assert_eq!(
        v["repositories"],
        json!(["dst"]),
        "only repositories with manifests are listed"
    );
    let v: Value = r
        .http
        .get(r.url("/v2/_catalog?n=1"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    assert_eq!(v["repositories"], json!(["dst"]));

    // Delete a tag, then the manifest (and with it its other tags).
    let del = r
        .http
        .delete(r.url("/v2/dst/manifests/e"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::ACCEPTED);
    let md = sha256_of(&serde_json::to_vec(&m).unwrap()).to_string();
    let del = r
        .http
        .delete(r.url(&format!("/v2/dst/manifests/{md}")))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::ACCEPTED);
    let get = r
        .http
        .get(r.url("/v2/dst/manifests/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::NOT_FOUND);
    let del = r
        .http
        .delete(r.url(&format!("/v2/dst/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::ACCEPTED);
    let head = r
        .http
        .head(r.url(&format!("/v2/dst/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    let head = r
        .http
        .head(r.url(&format!("/v2/src/blobs/{ld}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.status(),
        StatusCode::OK,
        "the source repository keeps it"
    );
}

#[tokio::test]
async fn referrers_track_subjects() {
    let r = start(None).await;
    let config = b"{}".to_vec();
    let cd = r.upload("s", &config).await;
    let subject = manifest(&cd, 2, &[]);
    let resp = r.put_manifest("s", "v1", &subject).await;
    let sd = resp.headers()["Docker-Content-Digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let sig = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd, "size": 2},
        "layers": [],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sd, "size": 10},
        "annotations": {"k": "v"}
    });
    let sig_d = sha256_of(&serde_json::to_vec(&sig).unwrap()).to_string();
    let resp = r.put_manifest("s", &sig_d, &sig).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["OCI-Subject"].to_str().unwrap(), sd);
    let list = r
        .http
        .get(r.url(&format!("/v2/s/referrers/{sd}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        list.headers()["Content-Type"],
        "application/vnd.oci.image.index.v1+json"
    );
    let v: Value = list
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    assert_eq!(v["manifests"][0]["digest"], sig_d.as_str());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.signature"
    );
    assert_eq!(v["manifests"][0]["annotations"]["k"], "v");
    let filtered = r
        .http
        .get(r.url(&format!("/v2/s/referrers/{sd}?artifactType=other")))
        .send()
        .await
        .unwrap();
    assert_eq!(filtered.headers()["OCI-Filters-Applied"], "artifactType");
    let v: Value = filtered
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    assert_eq!(v["manifests"], json!([]));
    // Deleting the referrer drops it from the list.
    r.http
        .delete(r.url(&format!("/v2/s/manifests/{sig_d}")))
        .send()
        .await
        .unwrap();
    let v: Value = r
        .http
        .get(r.url(&format!("/v2/s/referrers/{sd}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
        .unwrap();
    assert_eq!(v["manifests"], json!([]));
}

#[tokio::test]
async fn htpasswd_guards_every_endpoint() {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let r = start(Some(&format!("alice:{hash}\n"))).await;
    let anon = r.http.get(r.url("/v2/")).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    assert!(
        anon.headers()["WWW-Authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    assert_eq!(error_code(anon).await, "UNAUTHORIZED");
    let bad = r
        .http
        .get(r.url("/v2/_catalog"))
        .basic_auth("alice", Some("no"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let ok = r
        .http
        .get(r.url("/v2/"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}
