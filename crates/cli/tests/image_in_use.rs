//! Images that containers use: `rmi` of an image's last name refuses without `-f` (docker's "must
//! force" conflict), `image prune -a` removes every image no container uses and keeps the rest, and
//! a container whose image was force-removed still starts.
#![allow(clippy::disallowed_macros)]

mod container_support;

use container_support::Kontti;

fn image_names(k: &Kontti) -> String {
    k.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
}

#[test]
fn images_in_use_need_force_and_survive_prune_all() {
    let k = Kontti::new();
    // a second image, with other content, that no container uses
    let extra = k.root().with_file_name("extra");
    std::fs::create_dir_all(extra.join("etc")).unwrap();
    std::fs::write(extra.join("etc/marker"), "unused image\n").unwrap();
    let tar = k.root().with_file_name("extra.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&extra)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    k.ok(&["import", tar.to_str().unwrap(), "unused:1"]);
    k.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "user",
        "busybox",
        "true",
    ]);

    let err = k.fails(&["images", "--format", "{{.Nope}}"], 5);
    assert!(err.contains("no field \"Nope\""), "{err}");

    // the last name of a used image: refused, and nothing changes
    let err = k.fails(&["rmi", "busybox"], 4);
    assert!(
        err.contains("must force") && err.contains("used by a container"),
        "{err}"
    );
    assert!(image_names(&k).contains("busybox:latest"));
    // one of two names only untags, which is allowed
    k.ok(&["tag", "busybox", "alias:1"]);
    let out = k.ok(&["rmi", "alias:1"]);
    assert!(out.contains("Untagged: alias:1"), "{out}");

    // prune -a: the unused image goes, the used one stays
    let out = k.ok(&["image", "prune", "-a"]);
    assert!(out.contains("Deleted Images:"), "{out}");
    let names = image_names(&k);
    assert!(!names.contains("unused:1"), "{names}");
    assert!(names.contains("busybox:latest"), "{names}");

    // -f removes it; the container still has its layers and starts
    k.ok(&["rmi", "-f", "busybox"]);
    assert!(!image_names(&k).contains("busybox"));
    k.ok(&["start", "-a", "user"]);
    k.ok(&["rm", "user"]);
    let out = k.ok(&["image", "prune"]);
    assert!(
        out.contains("1 layers"),
        "the container's layer goes with it: {out}"
    );
    k.finish();
}
