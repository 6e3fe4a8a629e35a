//! The strict mount check against fixture mount tables describing real directories: which
//! types pass, nested mounts, escaped spaces, symlinks on and off the share, the mount point
//! itself and paths below it. And: a sink whose target fails the check writes nothing.
#![cfg(unix)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use backup_core::Sink;
use sink_cifs_replica::mount::CIFS_MAGIC;
use sink_cifs_replica::{CifsReplicaSink, MountCheck, MountInfoSource, ReplicaError, Verdict};

/// A directory tree plus a mount table that says which of its directories are mounts of what.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    table: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        for d in [
            "share/App",
            "share/local/x",
            "smb3/App",
            "my share/App",
            "local/dir",
            "tmpfs/App",
            "fuse/App",
            "overlay/App",
            "nfs/App",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        std::os::unix::fs::symlink(root.join("local/dir"), root.join("share/link")).unwrap();
        std::os::unix::fs::symlink(root.join("share/App"), root.join("local/onto-share")).unwrap();
        std::os::unix::fs::symlink(root.join("share/gone"), root.join("share/dangling")).unwrap();
        let r = root.display().to_string();
        let esc = r.replace(' ', "\\040");
        let table = format!(
            "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
             27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
             60 27 0:60 / {esc}/share rw,relatime shared:40 - cifs //nas/backup rw,vers=3.1.1\n\
             61 60 254:16 / {esc}/share/local rw,relatime - ext4 /dev/vdb rw\n\
             62 27 0:62 / {esc}/smb3 rw - smb3 //nas/smb3 rw\n\
             63 27 0:63 / {esc}/my\\040share rw - cifs //nas/with\\040space rw\n\
             64 27 0:64 / {esc}/tmpfs rw - tmpfs tmpfs rw\n\
             65 27 0:65 / {esc}/fuse rw - fuse sshfs rw\n\
             66 27 0:66 / {esc}/overlay rw - overlay overlay rw,lowerdir=/a\n\
             67 27 0:67 / {esc}/nfs rw - nfs4 nas:/export rw\n"
        );
        Fixture { _dir: dir, root, table }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn check(&self) -> MountCheck {
        MountCheck::default().with_mountinfo(MountInfoSource::Text(self.table.clone()))
    }
}

#[test]
fn cifs_and_smb3_are_accepted_at_the_mount_point_and_below() {
    let f = Fixture::new();
    let c = f.check();
    for (path, mp, ty, src) in [
        ("share", "share", "cifs", "//nas/backup"),
        ("share/App", "share", "cifs", "//nas/backup"),
        ("share/App/not/yet/there", "share", "cifs", "//nas/backup"),
        ("smb3/App", "smb3", "smb3", "//nas/smb3"),
    ] {
        let r = c.check(&f.p(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(r.verdict, Verdict::Allowed, "{path}");
        assert_eq!(r.mount_point, f.p(mp), "{path}");
        assert_eq!((r.fs_type.as_str(), r.source.as_str()), (ty, src), "{path}");
        assert_eq!(r.resolved, f.p(path));
    }
    let r = c.check(&f.p("share/App/not/yet/there")).unwrap();
    assert!(
        !r.exists,
        "a missing path is checked through its nearest existing ancestor"
    );
    assert!(c.check(&f.p("share/App")).unwrap().exists);
}

#[test]
fn local_and_other_filesystems_are_rejected_by_default() {
    let f = Fixture::new();
    let c = f.check().with_config_key("sinks.windows.path");
    for (path, ty, mp) in [
        ("local/dir", "ext4", PathBuf::from("/")),
        ("tmpfs/App", "tmpfs", f.p("tmpfs")),
        ("fuse/App", "fuse", f.p("fuse")),
        ("overlay/App", "overlay", f.p("overlay")),
        ("nfs/App", "nfs4", f.p("nfs")),
    ] {
        let r = c.inspect(&f.p(path)).unwrap();
        assert_eq!(r.verdict, Verdict::TypeNotAllowed, "{path}");
        let e = c.check(&f.p(path)).unwrap_err();
        assert!(e.is_mount_problem());
        assert_eq!(
            e.to_string(),
            format!(
                "{} is not on a CIFS mount (it is on {ty} {}); mount the share or fix sinks.windows.path",
                f.p(path).display(),
                mp.display()
            )
        );
    }
    // The allowed list decides: a fuse share passes once allowed.
    let fuse = MountCheck::new(["fuse"]).with_mountinfo(MountInfoSource::Text(f.table.clone()));
    assert!(fuse.check(&f.p("fuse/App")).is_ok());
    let e = fuse.check(&f.p("share/App")).unwrap_err().to_string();
    assert!(e.contains("is not on a mount of type fuse (it is on cifs"), "{e}");
}

#[test]
fn a_local_disk_mounted_below_the_share_is_not_the_share() {
    let f = Fixture::new();
    let r = f.check().inspect(&f.p("share/local/x")).unwrap();
    assert_eq!(r.verdict, Verdict::TypeNotAllowed);
    assert_eq!(
        (r.fs_type.as_str(), r.mount_point.clone()),
        ("ext4", f.p("share/local"))
    );
    // Next to the nested mount, the share itself still counts.
    assert!(f.check().check(&f.p("share/App")).is_ok());
}

#[test]
fn escaped_spaces_in_mount_points_and_sources() {
    let f = Fixture::new();
    let r = f.check().check(&f.p("my share/App")).unwrap();
    assert_eq!(r.mount_point, f.p("my share"));
    assert_eq!(r.source, "//nas/with space");
}

#[test]
fn symlinks_are_followed_and_judged_by_where_they_lead() {
    let f = Fixture::new();
    // On the share, pointing off it: rejected, judged by the target.
    let r = f.check().inspect(&f.p("share/link")).unwrap();
    assert_eq!(r.resolved, f.p("local/dir"));
    assert_eq!((r.verdict, r.fs_type.as_str()), (Verdict::TypeNotAllowed, "ext4"));
    let e = f.check().check(&f.p("share/link/sub")).unwrap_err().to_string();
    assert!(e.contains("is not on a CIFS mount (it is on ext4 /)"), "{e}");
    // Off the share, pointing onto it: accepted.
    let r = f.check().check(&f.p("local/onto-share")).unwrap();
    assert_eq!(r.resolved, f.p("share/App"));
    // Pointing nowhere: refused, whatever is below.
    let e = f.check().check(&f.p("share/dangling/x")).unwrap_err();
    assert!(matches!(e, ReplicaError::DanglingSymlink { .. }), "{e}");
}

#[test]
fn mount_table_from_a_file_and_unreadable_tables() {
    let f = Fixture::new();
    let file = f.p("mountinfo");
    fs::write(&file, &f.table).unwrap();
    let c = MountCheck::default().with_mountinfo(MountInfoSource::File(file.clone()));
    let r = c.check(&f.p("share/App")).unwrap();
    assert_eq!(r.mount_table, file.display().to_string());
    let missing = MountCheck::default().with_mountinfo(MountInfoSource::File(f.p("nope")));
    let e = missing.check(&f.p("share/App")).unwrap_err().to_string();
    assert!(e.starts_with("cannot read the mount table"), "{e}");
    let bad = MountCheck::default().with_mountinfo(MountInfoSource::Text("garbage\n".into()));
    assert!(bad.check(&f.p("share/App")).unwrap_err().to_string().contains("line 1"));
    let e = f.check().check(Path::new("")).unwrap_err().to_string();
    assert!(e.starts_with("replica path is empty"), "{e}");
}

/// The table says cifs, the filesystem is something else: the statfs magic catches it.
#[cfg(target_os = "linux")]
#[test]
fn statfs_magic_must_agree_with_the_mount_table() {
    let f = Fixture::new();
    let c = f.check().with_statfs(true).with_config_key("sinks.windows.path");
    let r = c.inspect(&f.p("share/App")).unwrap();
    assert_eq!(r.verdict, Verdict::MagicMismatch, "{r:?}");
    assert!(r.fs_magic.is_some_and(|m| m != CIFS_MAGIC));
    let e = c.check(&f.p("share/App")).unwrap_err().to_string();
    assert!(
        e.contains("is listed as a cifs mount") && e.contains("remount the share"),
        "{e}"
    );
    // The live table on the real machine agrees with statfs.
    let live = MountCheck::new(["ext4", "overlay", "tmpfs", "xfs", "btrfs"])
        .inspect(f.root.as_path())
        .unwrap();
    assert_ne!(live.verdict, Verdict::MagicMismatch, "{live:?}");
}

#[tokio::test]
async fn a_sink_whose_target_fails_the_check_writes_nothing() {
    let f = Fixture::new();
    let tmp = tempfile::tempdir().unwrap();
    let pack = common::sealed_pack(
        &tmp.path().join("p_20260101_000000"),
        "nightly",
        "p_20260101_000000",
        &[1000],
    );
    for target in ["local/dir", "share/local/x", "share/link", "tmpfs/App"] {
        let sink = CifsReplicaSink::new("windows", f.p(target))
            .with_mount_check(MountCheck::default().with_mountinfo(MountInfoSource::Text(f.table.clone())));
        let before = common::tree(&f.root);
        let e = sink.store(&pack, 1).await.unwrap_err().chain();
        assert!(e.starts_with("sink `windows`: "), "{e}");
        assert!(e.contains("is not on a CIFS mount"), "{e}");
        assert!(e.contains("mount the share or fix sinks.windows.path"), "{e}");
        assert!(sink.list(None).await.is_err(), "{target}: listing must refuse too");
        assert!(
            sink.clean_leftovers().await.is_err(),
            "{target}: cleaning must refuse too"
        );
        assert!(sink.delete("nightly", "p_20260101_000000").await.is_err());
        assert!(sink.check().await.is_err());
        assert_eq!(common::tree(&f.root), before, "{target}: nothing may be written");
    }
    assert!(pack.dir().join("manifest.json").exists(), "the local pack stays");

    // Unset path, and a target that does not exist on an accepted share.
    let e = CifsReplicaSink::new("windows", "")
        .store(&pack, 1)
        .await
        .unwrap_err()
        .chain();
    assert_eq!(
        e,
        "sink `windows`: replica path is empty; set sinks.windows.path to the directory on the mounted share"
    );
    let sink = CifsReplicaSink::new("windows", f.p("share/Missing"))
        .with_mount_check(MountCheck::default().with_mountinfo(MountInfoSource::Text(f.table.clone())));
    let e = sink.store(&pack, 1).await.unwrap_err().chain();
    assert!(e.contains("does not exist on the share mounted at"), "{e}");
    assert!(!f.p("share/Missing").exists());
}
