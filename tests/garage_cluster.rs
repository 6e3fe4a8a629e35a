//! The Garage test cluster itself and its failure helper (`packrat_e2e::garage`), against the
//! real three-node cluster: an object written through one node is read through every node; with
//! a node SIGKILLed, writes and reads through the others still succeed (quorum 2 of 3), and the
//! restarted node serves what was written while it was down; dropping the guard restarts the
//! node; with two nodes down writes fail for want of a quorum, and work again once the nodes
//! are back (restarted in either order).

#![cfg(unix)]

use packrat_e2e::garage::Cluster;

/// A key no other test (or earlier run) uses.
fn unique_key(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("garage-cluster-test/{name}/{}-{nanos}/obj x:y", std::process::id())
}

fn body_file(dir: &tempfile::TempDir, name: &str, len: usize, seed: u8) -> (std::path::PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let path = dir.path().join(name);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

#[test]
fn an_object_written_through_one_node_is_read_and_listed_through_every_node() {
    let cluster = Cluster::from_env();
    // Reads through nodes 1 and 2: no node may be killed meanwhile.
    let _all = cluster.all_nodes_up();
    let tmp = tempfile::tempdir().unwrap();
    let (path, data) = body_file(&tmp, "obj", 300_000, 7);
    let key = unique_key("roundtrip");
    cluster.put_object(0, &key, &path).unwrap();
    for node in 0..3 {
        assert_eq!(
            cluster.get_object(node, &key).unwrap(),
            data,
            "object read through node {node}"
        );
        let prefix = key.rsplit_once('/').unwrap().0;
        assert_eq!(
            cluster.list_keys(node, prefix).unwrap(),
            [key.as_str()],
            "listing through node {node}"
        );
    }
    cluster.delete_object(0, &key).unwrap();
    let err = cluster.get_object(1, &key).unwrap_err();
    assert!(err.contains("NoSuchKey"), "{err}");
}

#[test]
fn with_a_node_killed_the_others_keep_a_quorum_and_the_restarted_node_catches_up() {
    let cluster = Cluster::from_env();
    let tmp = tempfile::tempdir().unwrap();
    let (path, data) = body_file(&tmp, "obj", 2_000_000, 3);
    let key = unique_key("quorum");

    let down = cluster.kill_node(2);
    assert!(!cluster.is_up(2), "node 2 still answers after SIGKILL");
    let err = cluster.get_object(2, &key).unwrap_err();
    assert!(err.contains("onnect"), "a killed node must refuse connections: {err}");
    cluster.put_object(0, &key, &path).unwrap();
    assert_eq!(cluster.get_object(1, &key).unwrap(), data);

    down.restart();
    assert!(cluster.is_up(2));
    assert_eq!(
        cluster.get_object(2, &key).unwrap(),
        data,
        "the restarted node serves what was written while it was down"
    );
    cluster.delete_object(0, &key).unwrap();
}

#[test]
fn dropping_the_guard_restarts_the_node() {
    let cluster = Cluster::from_env();
    {
        let down = cluster.kill_node(1);
        assert_eq!(down.node(), 1);
        assert!(!cluster.is_up(1));
    }
    assert!(cluster.is_up(1), "node 1 was not restarted when its guard was dropped");
    cluster.wait_healthy();
}

#[test]
fn with_two_nodes_down_writes_fail_and_work_again_once_they_are_back() {
    let cluster = Cluster::from_env();
    let tmp = tempfile::tempdir().unwrap();
    let (path, data) = body_file(&tmp, "obj", 100_000, 11);
    let key = unique_key("no-quorum");
    {
        let first = cluster.kill_node(1);
        let second = cluster.kill_node(2);
        let err = cluster.put_object(0, &key, &path).unwrap_err();
        assert!(err.contains("quorum"), "a write without quorum fails naming it: {err}");
        // The first guard restarted before the second: the fault lock stays held until both.
        first.restart();
        assert!(cluster.is_up(1) && !cluster.is_up(2));
        drop(second);
    }
    assert!(cluster.is_up(1) && cluster.is_up(2));
    cluster.put_object(0, &key, &path).unwrap();
    assert_eq!(cluster.get_object(0, &key).unwrap(), data);
    cluster.delete_object(0, &key).unwrap();
}
