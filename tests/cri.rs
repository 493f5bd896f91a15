//! What a Kubernetes node does with a RuntimeClass whose handler is `beam`: the kubelet's CRI calls, made by a
//! small client (the k8s-cri crate, CRI v1 over tonic) on containerd 1.6's CRI plugin, which runs the pod
//! through the runc v2 shim with beam-oci as its runtime binary.
//!
//! RunPodSandbox (the sandbox image is a busybox `sleep`, imported locally) → CreateContainer → StartContainer
//! → ExecSync → ContainerStatus → StopContainer → RemoveContainer → StopPodSandbox → RemovePodSandbox, then
//! nothing is left; and a pod for an unknown runtime handler is refused, naming the handler. The pod uses the
//! node's network namespace (NamespaceMode NODE, like `hostNetwork: true`), so containerd needs no CNI plugin.
//!
//! Root only (`#[ignore = "needs root"]`); skipped (with a message) when containerd or ctr is missing.
//! containerd is the test's own (tests/common_containerd), torn down by a guard even when a step fails.
//!
//! Run (as root): `cargo test --test cri -- --include-ignored --nocapture`

mod common_containerd;
mod common_root;
use common_containerd::{Containerd, Options, busybox_rootfs, cgroup_dirs, oci_archive};
use common_root::require_root;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

const PAUSE_IMAGE: &str = "beam.local/pause:1";
const IMAGE: &str = "beam.local/busybox:1";
/// containerd's CRI plugin keeps everything in this containerd namespace.
const K8S_NS: &str = "k8s.io";
/// Every CRI call is bounded, so a hung runtime fails the test instead of hanging it.
const RPC_TIMEOUT: Duration = Duration::from_secs(300);

// NamespaceMode and the states, as the CRI proto numbers them.
const NS_CONTAINER: i32 = NamespaceMode::Container as i32;
const NS_NODE: i32 = NamespaceMode::Node as i32;
const NS_POD: i32 = NamespaceMode::Pod as i32;

/// A kubelet-like CRI client over containerd's socket.
struct Cri {
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
}

async fn connect(socket: PathBuf) -> Cri {
    // The URI is unused: the connector dials the unix socket.
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
        .expect("connect to containerd's CRI socket");
    Cri { rt: RuntimeServiceClient::new(channel.clone()), img: ImageServiceClient::new(channel) }
}

/// Await a CRI call (bounded); Err is the gRPC status.
async fn call<T>(what: &str, f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>) -> Result<T, tonic::Status> {
    match tokio::time::timeout(RPC_TIMEOUT, f).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => panic!("CRI {what} did not answer within {RPC_TIMEOUT:?}"),
    }
}

/// Start containerd with the CRI plugin and import the two images into its k8s.io namespace.
fn containerd_with_images(name: &str, cgroup_parent: &str) -> Containerd {
    let mut ctd = Containerd::start(name, Options { cri: true, sandbox_image: PAUSE_IMAGE });
    ctd.namespaces.push(K8S_NS.into());
    ctd.cgroup_parents.push(cgroup_parent.into());
    let rootfs = ctd.dir().join("rootfs");
    busybox_rootfs(&rootfs);
    // The pause image: PID 1 of the pod sandbox sleeps until it is killed.
    let pause = oci_archive(&ctd.dir().join("pause.tar"), &rootfs, PAUSE_IMAGE, json!({"Entrypoint": ["/bin/sleep", "2147483647"]}));
    let busybox = oci_archive(&ctd.dir().join("busybox.tar"), &rootfs, IMAGE, json!({"Cmd": ["sh"]}));
    ctd.import(K8S_NS, &pause);
    ctd.import(K8S_NS, &busybox);
    ctd
}

/// Wait until the CRI plugin's image store has `image` (it learns of ctr's imports from containerd's events).
async fn await_image(cri: &mut Cri, ctd: &Containerd, image: &str) {
    let start = Instant::now();
    loop {
        let req = ImageStatusRequest { image: Some(ImageSpec { image: image.into(), ..Default::default() }), verbose: false };
        let st = call("ImageStatus", cri.img.image_status(req)).await.expect("ImageStatus");
        if st.image.is_some() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "the CRI plugin never saw image {image}{}", ctd.diag());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pod as the kubelet describes a `hostNetwork: true` pod: node network, own PID namespace per container,
/// a shared IPC namespace, our cgroup parent (cgroupfs), and a log directory.
fn pod_config(name: &str, cgroup_parent: &str, log_dir: &std::path::Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("{name}-uid-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: String::new(),
        log_directory: log_dir.to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.into(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn namespace_options() -> NamespaceOption {
    NamespaceOption { network: NS_NODE, pid: NS_CONTAINER, ipc: NS_POD, ..Default::default() }
}

/// The pid beam-oci has for a container (its state in the runtime root the shim used for k8s.io).
fn beam_oci_pid(ctd: &Containerd, id: &str) -> i32 {
    let out = ctd.beam_oci_cmd(K8S_NS, &["state", id]).output().unwrap();
    assert!(out.status.success(), "beam-oci state {id}: {}", common_containerd::text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["pid"].as_i64().expect("pid in beam-oci state") as i32
}

fn ns_link(pid: i32, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Nothing of the pod left anywhere: CRI, containerd, beam-oci, cgroups, mounts, shims.
async fn assert_nothing_left(cri: &mut Cri, ctd: &Containerd, ids: &[&str], cgroup_parent: &str) {
    let pods = call("ListPodSandbox", cri.rt.list_pod_sandbox(ListPodSandboxRequest { filter: None })).await.unwrap();
    assert!(pods.items.is_empty(), "pod sandboxes left: {:?}", pods.items);
    let cs = call("ListContainers", cri.rt.list_containers(ListContainersRequest { filter: None })).await.unwrap();
    assert!(cs.containers.is_empty(), "containers left: {:?}", cs.containers);
    assert!(ctd.lines(K8S_NS, &["task", "ls", "-q"]).is_empty(), "containerd tasks left");
    assert!(ctd.lines(K8S_NS, &["container", "ls", "-q"]).is_empty(), "containerd containers left");
    assert!(ctd.beam_oci_states(K8S_NS).is_empty(), "beam-oci state left: {:?}", ctd.beam_oci_states(K8S_NS));
    // containerd's own per-pod and per-container dirs (CRI's sandboxes/containers, the shims' bundles)
    for sub in [
        "root/io.containerd.grpc.v1.cri/sandboxes",
        "root/io.containerd.grpc.v1.cri/containers",
        "state/io.containerd.grpc.v1.cri/sandboxes",
        "state/io.containerd.grpc.v1.cri/containers",
        "state/io.containerd.runtime.v2.task/k8s.io",
    ] {
        let left: Vec<_> = std::fs::read_dir(ctd.dir().join(sub)).map(|r| r.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "left in {sub}: {left:?}");
    }
    for id in ids {
        let left = cgroup_dirs(&format!("{cgroup_parent}/{id}"));
        assert!(left.is_empty(), "cgroups left for {id}: {left:?}");
        let mounts = ctd.mounts_with(id);
        assert!(mounts.is_empty(), "mounts left for {id}:\n{}", mounts.join("\n"));
    }
    let start = Instant::now();
    while !ctd.pids_in_namespace().is_empty() {
        let left: Vec<String> = ctd.pids_in_namespace().iter().map(|p| common_containerd::cmdline(*p)).collect();
        assert!(start.elapsed() < Duration::from_secs(300), "processes left in containerd's namespace: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
#[allow(clippy::too_many_lines, reason = "one kubelet scenario, call by call")]
async fn kubelet_cri_calls_run_a_pod_on_beam_oci() {
    require_root();
    if let Some(why) = common_containerd::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let t0 = Instant::now();
    let cgroup_parent = format!("/beam-cri-test-{}-pod", std::process::id());
    let ctd = containerd_with_images("cri", &cgroup_parent);
    let mut cri = connect(ctd.socket.clone()).await;
    let v = call("Version", cri.rt.version(VersionRequest { version: "v1".into() })).await.expect("Version");
    assert_eq!((v.runtime_name.as_str(), v.runtime_api_version.as_str()), ("containerd", "v1"), "{v:?}");
    await_image(&mut cri, &ctd, PAUSE_IMAGE).await;
    await_image(&mut cri, &ctd, IMAGE).await;
    println!("containerd {} up, images imported at {:?}", v.runtime_version, t0.elapsed());

    let log_dir = ctd.dir().join("pods/beam-pod");
    std::fs::create_dir_all(&log_dir).unwrap();
    let pod = pod_config("beam-pod", &cgroup_parent, &log_dir);

    // RunPodSandbox on the `beam` handler: the sandbox (pause) container is beam-oci's.
    let req = RunPodSandboxRequest { config: Some(pod.clone()), runtime_handler: "beam".into() };
    let pod_id = match call("RunPodSandbox", cri.rt.run_pod_sandbox(req)).await {
        Ok(r) => r.pod_sandbox_id,
        Err(e) => panic!("RunPodSandbox: {e}{}", ctd.diag()),
    };
    let st = call("PodSandboxStatus", cri.rt.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: pod_id.clone(), verbose: false }))
        .await
        .unwrap();
    assert_eq!(st.status.as_ref().unwrap().state, PodSandboxState::SandboxReady as i32, "{st:?}");
    assert!(ctd.beam_oci_states(K8S_NS).contains(&pod_id), "beam-oci has no state for the sandbox {pod_id}");
    let pause_pid = beam_oci_pid(&ctd, &pod_id);
    assert_eq!(common_containerd::cmdline(pause_pid).trim(), "/bin/sleep 2147483647");
    let cg = std::fs::read_to_string(format!("/proc/{pause_pid}/cgroup")).unwrap();
    assert!(cg.contains(&format!(":{cgroup_parent}/{pod_id}")), "sandbox not in {cgroup_parent}/{pod_id}:\n{cg}");
    println!("RunPodSandbox {pod_id} at {:?}", t0.elapsed());

    // CreateContainer + StartContainer
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata { name: "main".into(), attempt: 0 }),
        image: Some(ImageSpec { image: IMAGE.into(), ..Default::default() }),
        command: vec!["/bin/sh".into(), "-c".into()],
        args: vec!["echo hello from cri; trap 'echo got TERM; exit 0' TERM; sleep 1000 & wait".into()],
        envs: vec![KeyValue { key: "GREETING".into(), value: "hi".into() }],
        log_path: "main.log".into(),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(namespace_options()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let req = CreateContainerRequest { pod_sandbox_id: pod_id.clone(), config: Some(config), sandbox_config: Some(pod.clone()) };
    let cid = match call("CreateContainer", cri.rt.create_container(req)).await {
        Ok(r) => r.container_id,
        Err(e) => panic!("CreateContainer: {e}{}", ctd.diag()),
    };
    let status = |cri: &mut Cri, id: String| {
        let mut rt = cri.rt.clone();
        async move {
            call("ContainerStatus", rt.container_status(ContainerStatusRequest { container_id: id, verbose: false }))
                .await
                .map(|r| r.status.expect("status"))
        }
    };
    assert_eq!(status(&mut cri, cid.clone()).await.unwrap().state, ContainerState::ContainerCreated as i32);
    if let Err(e) = call("StartContainer", cri.rt.start_container(StartContainerRequest { container_id: cid.clone() })).await {
        panic!("StartContainer: {e}{}", ctd.diag());
    }
    let s = status(&mut cri, cid.clone()).await.unwrap();
    assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{s:?}");
    assert!(s.started_at > 0, "{s:?}");
    // the container's stdout reaches its CRI log (`<time> stdout F <line>`)
    let log = log_dir.join("main.log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains(" stdout F hello from cri") {
        assert!(start.elapsed() < Duration::from_secs(300), "no output in {}: {:?}", log.display(), std::fs::read_to_string(&log));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = beam_oci_pid(&ctd, &cid);
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains(&format!(":{cgroup_parent}/{cid}")), "container not in {cgroup_parent}/{cid}:\n{cg}");
    // namespaces as asked: the node's network, the pod's IPC, its own PID namespace
    assert_eq!(ns_link(pid, "net"), ns_link(std::process::id() as i32, "net"), "network namespace NODE (ours)");
    assert_eq!(ns_link(pid, "ipc"), ns_link(pause_pid, "ipc"), "IPC namespace shared with the sandbox (POD)");
    assert_ne!(ns_link(pid, "pid"), ns_link(pause_pid, "pid"), "PID namespace of its own (CONTAINER)");
    println!("CreateContainer + StartContainer {cid} at {:?}", t0.elapsed());

    // ExecSync: exit code, stdout and stderr apart; the container's environment and pid namespace
    let exec = |cri: &mut Cri, cmd: &[&str]| {
        let req = ExecSyncRequest { container_id: cid.clone(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: 30 };
        let mut rt = cri.rt.clone();
        async move { call("ExecSync", rt.exec_sync(req)).await }
    };
    let r = exec(&mut cri, &["sh", "-c", "echo out $GREETING; echo err >&2; exit 3"]).await.expect("ExecSync");
    assert_eq!((r.exit_code, String::from_utf8_lossy(&r.stdout).as_ref(), String::from_utf8_lossy(&r.stderr).as_ref()), (3, "out hi\n", "err\n"));
    let r = exec(&mut cri, &["cat", "/proc/1/cmdline"]).await.expect("ExecSync");
    assert_eq!(r.exit_code, 0);
    assert!(r.stdout.starts_with(b"/bin/sh\0-c\0echo hello from cri"), "PID 1: {:?}", String::from_utf8_lossy(&r.stdout));
    let r = exec(&mut cri, &["true"]).await.expect("ExecSync");
    assert_eq!((r.exit_code, r.stdout.len(), r.stderr.len()), (0, 0, 0));
    println!("ExecSync at {:?}", t0.elapsed());

    // StopContainer: SIGTERM, the trap exits 0
    call("StopContainer", cri.rt.stop_container(StopContainerRequest { container_id: cid.clone(), timeout: 10 }))
        .await
        .unwrap_or_else(|e| panic!("StopContainer: {e}{}", ctd.diag()));
    let s = status(&mut cri, cid.clone()).await.unwrap();
    assert_eq!((s.state, s.exit_code), (ContainerState::ContainerExited as i32, 0), "{s:?}");
    assert!(s.finished_at >= s.started_at, "{s:?}");
    assert!(std::fs::read_to_string(&log).unwrap().contains(" stdout F got TERM"), "StopContainer sent no SIGTERM");
    assert!(!ctd.beam_oci_states(K8S_NS).contains(&cid) || beam_oci_status(&ctd, &cid) == "stopped");

    // RemoveContainer: gone from CRI, containerd and beam-oci
    call("RemoveContainer", cri.rt.remove_container(RemoveContainerRequest { container_id: cid.clone() }))
        .await
        .unwrap_or_else(|e| panic!("RemoveContainer: {e}{}", ctd.diag()));
    let e = status(&mut cri, cid.clone()).await.expect_err("ContainerStatus of a removed container");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    assert!(!ctd.beam_oci_states(K8S_NS).contains(&cid), "beam-oci still has the removed container");
    println!("StopContainer + RemoveContainer at {:?}", t0.elapsed());

    // StopPodSandbox, RemovePodSandbox
    call("StopPodSandbox", cri.rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod_id.clone() }))
        .await
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}{}", ctd.diag()));
    let st = call("PodSandboxStatus", cri.rt.pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: pod_id.clone(), verbose: false }))
        .await
        .unwrap();
    assert_eq!(st.status.as_ref().unwrap().state, PodSandboxState::SandboxNotready as i32, "{st:?}");
    call("RemovePodSandbox", cri.rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod_id.clone() }))
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}{}", ctd.diag()));
    assert_nothing_left(&mut cri, &ctd, &[&pod_id, &cid], &cgroup_parent).await;
    println!("StopPodSandbox + RemovePodSandbox, nothing left, at {:?}", t0.elapsed());
    drop(cri);
    drop(ctd);
    println!("the kubelet's CRI calls ran a pod on beam-oci; {:?} in all", t0.elapsed());
}

fn beam_oci_status(ctd: &Containerd, id: &str) -> String {
    let out = ctd.beam_oci_cmd(K8S_NS, &["state", id]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["status"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn unknown_runtime_handler_is_refused_and_leaves_nothing() {
    require_root();
    if let Some(why) = common_containerd::skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let cgroup_parent = format!("/beam-cri-test-{}-bad", std::process::id());
    let ctd = containerd_with_images("cri-bad", &cgroup_parent);
    let mut cri = connect(ctd.socket.clone()).await;
    await_image(&mut cri, &ctd, PAUSE_IMAGE).await;
    let log_dir = ctd.dir().join("pods/bad-pod");
    std::fs::create_dir_all(&log_dir).unwrap();
    let req = RunPodSandboxRequest {
        config: Some(pod_config("bad-pod", &cgroup_parent, &log_dir)),
        runtime_handler: "no-such-handler".into(),
    };
    let e = call("RunPodSandbox", cri.rt.run_pod_sandbox(req)).await.expect_err("a pod for an unknown runtime handler");
    println!("RunPodSandbox on an unknown handler: {:?}: {}", e.code(), e.message());
    assert!(e.message().contains("no-such-handler"), "the error should name the handler: {e}");
    assert_nothing_left(&mut cri, &ctd, &[], &cgroup_parent).await;
    assert!(cgroup_dirs(&cgroup_parent).is_empty(), "a cgroup was made for the refused pod");
}
