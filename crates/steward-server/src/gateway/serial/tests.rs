//! The serial channel end to end without QEMU: the real `steward-agent` binary opens the follower side of a
//! pseudo-terminal (`--channel-device`), and a bridge in the test plays QEMU's part: it listens on the guest's
//! unix socket, passes bytes between the socket's client (this server's attachment) and the pseudo-terminal, and
//! drops what the agent writes while no client is connected, as QEMU does. The bridge can also drop its client
//! and inject garbage either way, so the tests cover the server reconnecting, the agent restarting and a corrupted
//! channel, each of which must converge to a working conversation.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_protocol::ServerMessage;
use steward_store::systems::NewSystem;
use steward_types::SystemId;
use steward_types::api::Timestamp;
use steward_types::api::systems::SystemState;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::gateway::Registry;
use crate::state::AppState;

/// The `steward-agent` binary, built next to this test's executable (`cargo build --workspace --bins` first).
fn agent_binary() -> PathBuf {
    let test = std::env::current_exe().unwrap();
    let path = test.parent().unwrap().parent().unwrap().join("steward-agent");
    assert!(path.exists(), "{} is missing: build it first with `cargo build -p steward-agent`", path.display());
    path
}

/// A pseudo-terminal: the leader side for the bridge, the follower's path for the agent.
struct Pty {
    leader: File,
    follower_path: PathBuf,
    /// Held open so the leader never sees the follower hang up while the agent restarts.
    _follower: File,
}

fn open_pty() -> Pty {
    // SAFETY: plain libc calls on a descriptor this function owns; each result is checked.
    unsafe {
        let leader = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK);
        assert!(leader >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        assert_eq!(libc::grantpt(leader), 0);
        assert_eq!(libc::unlockpt(leader), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(leader, name.as_mut_ptr(), name.len()), 0);
        let follower_path = PathBuf::from(std::ffi::CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_string());
        let follower = std::fs::OpenOptions::new().read(true).write(true).open(&follower_path).unwrap();
        let mut termios: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(follower.as_raw_fd(), &mut termios), 0);
        libc::cfmakeraw(&mut termios);
        assert_eq!(libc::tcsetattr(follower.as_raw_fd(), libc::TCSANOW, &termios), 0);
        Pty { leader: File::from_raw_fd(leader), follower_path, _follower: follower }
    }
}

/// What the test tells the bridge to do.
enum BridgeCommand {
    /// Close the connection to the server, as if QEMU had restarted its socket.
    DropClient,
    /// Send these bytes to the server as if the agent had written them.
    ToServer(Vec<u8>),
    /// Send these bytes to the agent as if the server had written them.
    ToAgent(Vec<u8>),
}

async fn read_leader(leader: &AsyncFd<File>, buffer: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut guard = leader.readable().await?;
        if let Ok(result) = guard.try_io(|file| file.get_ref().read(buffer)) {
            return result;
        }
    }
}

async fn write_leader(leader: &AsyncFd<File>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let mut guard = leader.writable().await?;
        if let Ok(result) = guard.try_io(|file| file.get_ref().write(bytes)) {
            bytes = &bytes[result?..];
        }
    }
    Ok(())
}

/// QEMU's part: the socket's listening end, bridged to the pseudo-terminal.
async fn bridge(listener: UnixListener, leader: File, mut commands: mpsc::Receiver<BridgeCommand>) {
    // SAFETY: `leader` owns its descriptor and moves into the AsyncFd, which keeps it open until dropped.
    let leader = unsafe { AsyncFd::register(leader) }.unwrap();
    let mut client: Option<UnixStream> = None;
    let mut from_agent = vec![0u8; 64 * 1024];
    let mut from_server = vec![0u8; 64 * 1024];
    loop {
        let connected = client.is_some();
        tokio::select! {
            accepted = listener.accept(), if !connected => client = Some(accepted.unwrap().0),
            read = read_leader(&leader, &mut from_agent) => {
                let count = read.unwrap();
                // Without a client QEMU drops what the guest writes.
                if let Some(stream) = client.as_mut()
                    && stream.write_all(&from_agent[..count]).await.is_err()
                {
                    client = None;
                }
            }
            read = async { client.as_mut().unwrap().read(&mut from_server).await }, if connected => match read {
                Ok(0) | Err(_) => client = None,
                Ok(count) => write_leader(&leader, &from_server[..count]).await.unwrap(),
            },
            command = commands.recv() => match command {
                None => return,
                Some(BridgeCommand::DropClient) => client = None,
                Some(BridgeCommand::ToServer(bytes)) => {
                    if let Some(stream) = client.as_mut() {
                        stream.write_all(&bytes).await.unwrap();
                    }
                }
                Some(BridgeCommand::ToAgent(bytes)) => write_leader(&leader, &bytes).await.unwrap(),
            },
        }
    }
}

/// The agent process; killed when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(device: &Path, state_dir: &Path, log_name: &str) -> Agent {
        std::fs::create_dir_all(state_dir).unwrap();
        let log = state_dir.join(log_name);
        let child = Command::new(agent_binary())
            .args(["--channel", "virtio-serial", "--log", "debug", "--channel-device"])
            .arg(device)
            .arg("--state-dir")
            .arg(state_dir)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn welcomes(&self) -> usize {
        self.log().matches("connected to the server").count()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn test_state(data: &Path) -> AppState {
    let store = steward_store::Store::open_file(&data.join("steward.db")).await.unwrap();
    AppState {
        store,
        ca: Arc::new(crate::pki::CertificateAuthority::load_or_create(data).unwrap()),
        agents: Arc::new(Registry::default()),
        gateway_port: 0,
        monitors: Arc::new(crate::app::monitors::Monitors::default()),
        hosts: Arc::new(crate::app::hosts::Hosts::default()),
        data_dir: Arc::new(data.to_path_buf()),
        faults: Arc::new(crate::app::sagas::faults::FaultPlan::default()),
    }
}

/// A system record as the create saga makes it before the guest's agent ever speaks: no certificate.
async fn create_system(state: &AppState, name: &str) -> SystemId {
    let id = SystemId::new();
    let mut conn = state.store.conn().await.unwrap();
    let system = NewSystem { id, name, hostname: name, agent_version: "", enrolled_at: Timestamp::now() };
    steward_store::systems::insert(&mut conn, &system).await.unwrap();
    id
}

async fn wait_for<F: AsyncFnMut() -> bool>(what: &str, agent: &Agent, mut condition: F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}; agent log:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn online(state: &AppState, system: SystemId) -> bool {
    let mut conn = state.store.conn().await.unwrap();
    let summary = steward_store::systems::get(&mut conn, &system.to_string()).await.unwrap();
    summary.is_some_and(|summary| summary.state == SystemState::Online)
}

async fn inventory_time(state: &AppState, system: SystemId) -> Option<i64> {
    let mut conn = state.store.conn().await.unwrap();
    steward_store::systems::inventory_get(&mut conn, system).await.unwrap().map(|(_, at)| at.millis())
}

/// The registry's connection number for `system`, if a conversation is registered.
fn connection(state: &AppState, system: SystemId) -> Option<u64> {
    let agents = state.agents.agents.lock().unwrap();
    agents.get(&system).map(|handle| handle.connection)
}

/// Proves the conversation works both ways: a refresh request reaches the agent and its report is stored.
async fn assert_conversation_works(state: &AppState, system: SystemId, agent: &Agent, when: &str) {
    wait_for(&format!("the agent to be online ({when})"), agent, async || {
        online(state, system).await && connection(state, system).is_some()
    })
    .await;
    let before = inventory_time(state, system).await;
    // A request can race with the end of a conversation the test just disturbed; ask until one is answered.
    wait_for(&format!("a refreshed inventory ({when})"), agent, async || {
        let _ = state.agents.send(system, ServerMessage::RefreshInventory { full: true });
        tokio::time::sleep(Duration::from_millis(300)).await;
        inventory_time(state, system).await > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serial_channel_converges_after_reconnects_restarts_and_garbage() {
    let temp = tempfile::tempdir().unwrap();
    let state = test_state(temp.path()).await;
    let system = create_system(&state, "guest-1").await;
    let socket = temp.path().join("guests").join("guest-1").join("agent.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();

    // Attached before the guest runs: the server keeps trying until the socket appears.
    state.agents.attach_serial(&state, system, socket.clone()).unwrap();
    state.agents.attach_serial(&state, system, socket.clone()).unwrap();
    assert_eq!(state.agents.serial_socket(system), Some(socket.clone()));
    let pty = open_pty();
    let (commands, command_receiver) = mpsc::channel(8);
    tokio::spawn(bridge(UnixListener::bind(&socket).unwrap(), pty.leader, command_receiver));
    let agent_dir = temp.path().join("agent");
    let mut agent = Agent::start(&pty.follower_path, &agent_dir, "agent-1.log");

    // The agent's hello arrives and its inventory is stored.
    wait_for("the first inventory", &agent, async || inventory_time(&state, system).await.is_some()).await;
    assert_conversation_works(&state, system, &agent, "first conversation").await;
    let first = connection(&state, system).unwrap();

    // The server reconnects (QEMU dropped the socket's client): a new conversation on a new connection.
    commands.send(BridgeCommand::DropClient).await.unwrap();
    wait_for("a new connection after the socket dropped", &agent, async || {
        connection(&state, system).is_some_and(|current| current != first)
    })
    .await;
    assert_conversation_works(&state, system, &agent, "after the server reconnected").await;

    // Detaching ends the conversation; attaching again starts a new one.
    assert!(state.agents.detach_serial(system));
    assert!(!state.agents.detach_serial(system));
    wait_for("the agent to go offline after detaching", &agent, async || {
        connection(&state, system).is_none() && !online(&state, system).await
    })
    .await;
    state.agents.attach_serial(&state, system, socket.clone()).unwrap();
    assert_conversation_works(&state, system, &agent, "after attaching again").await;

    // The agent restarts: its new Hello is welcomed on the same socket connection.
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    agent = Agent::start(&pty.follower_path, &agent_dir, "agent-2.log");
    wait_for("the restarted agent's welcome", &agent, async || agent.welcomes() >= 1).await;
    assert_conversation_works(&state, system, &agent, "after the agent restarted").await;

    // Garbage towards the server ends that conversation; the server reconnects and the agent says hello again.
    let before_garbage = connection(&state, system).unwrap();
    commands.send(BridgeCommand::ToServer(b"\x00\x00\x00\x10not a frame at all".to_vec())).await.unwrap();
    wait_for("a new connection after garbage to the server", &agent, async || {
        connection(&state, system).is_some_and(|current| current != before_garbage)
    })
    .await;
    assert_conversation_works(&state, system, &agent, "after garbage to the server").await;

    // Garbage towards the agent ends its conversation; it reopens the port and says hello again.
    let welcomes = agent.welcomes();
    commands.send(BridgeCommand::ToAgent(b"\x00\x00\x00\x05junk!".to_vec())).await.unwrap();
    wait_for("the agent to start over after garbage", &agent, async || agent.welcomes() > welcomes).await;
    assert!(agent.log().contains("out of step"), "{}", agent.log());
    assert_conversation_works(&state, system, &agent, "after garbage to the agent").await;

    // Deleting the system ends the attachment for good, and the agent is told not to come back.
    {
        let mut conn = state.store.conn().await.unwrap();
        steward_store::systems::delete(&mut conn, system).await.unwrap();
    }
    state.agents.disconnect(system, "the system was removed from Steward");
    wait_for("the attachment to stop after the system was deleted", &agent, async || {
        state.agents.serial_socket(system).is_none()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the agent did not stop after its system was deleted:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    assert!(agent.log().contains("refused this agent for good"), "{}", agent.log());
}

#[tokio::test]
async fn attaching_refuses_unusable_socket_paths() {
    let temp = tempfile::tempdir().unwrap();
    let state = test_state(temp.path()).await;
    let system = SystemId::new();
    let relative = state.agents.attach_serial(&state, system, PathBuf::from("guests/a/agent.sock")).unwrap_err();
    assert!(relative.to_string().contains("is not an absolute path"), "{relative}");
    let long = PathBuf::from(format!("/{}", "x".repeat(120)));
    let too_long = state.agents.attach_serial(&state, system, long).unwrap_err();
    assert!(too_long.to_string().contains("unix sockets allow at most 107"), "{too_long}");
    assert_eq!(state.agents.serial_socket(system), None);
}

#[tokio::test]
async fn an_attachment_for_a_system_that_does_not_exist_stops_by_itself() {
    let temp = tempfile::tempdir().unwrap();
    let state = test_state(temp.path()).await;
    let system = SystemId::new();
    state.agents.attach_serial(&state, system, temp.path().join("agent.sock")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.agents.serial_socket(system).is_some() {
        assert!(Instant::now() < deadline, "the attachment of a missing system is still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_answered_over_the_serial_channel() {
    use steward_protocol::{AgentRequest, AgentResponse, CommandRequest};

    use crate::gateway::AgentRequestError;

    let temp = tempfile::tempdir().unwrap();
    let state = test_state(temp.path()).await;
    let system = create_system(&state, "guest-requests").await;
    let socket = temp.path().join("agent.sock");
    let pty = open_pty();
    let (_commands, command_receiver) = mpsc::channel(8);
    tokio::spawn(bridge(UnixListener::bind(&socket).unwrap(), pty.leader, command_receiver));
    let agent = Agent::start(&pty.follower_path, &temp.path().join("agent"), "agent.log");
    let timeout = Duration::from_secs(60);
    let command = |argv: &[&str]| {
        AgentRequest::RunCommand(CommandRequest {
            argv: argv.iter().map(|argument| argument.to_string()).collect(),
            environment: [("WHO".to_string(), "serial".to_string())].into(),
            stdin: Some("from the server\n".into()),
            timeout_seconds: 30,
            working_directory: None,
        })
    };
    // Not attached yet: nobody to ask.
    let offline = state.agents.request(system, command(&["true"]), timeout).await;
    assert_eq!(offline, Err(AgentRequestError::Offline));

    state.agents.attach_serial(&state, system, socket).unwrap();
    wait_for("the agent to be online", &agent, async || {
        online(&state, system).await && connection(&state, system).is_some()
    })
    .await;
    let answer = state.agents.request(system, command(&["sh", "-c", "cat; echo \"hello $WHO\"; exit 4"]), timeout);
    let Ok(AgentResponse::Command(outcome)) = answer.await else { panic!("no command outcome:\n{}", agent.log()) };
    assert_eq!(outcome.stdout, "from the server\nhello serial\n");
    assert_eq!(outcome.exit_code, Some(4));

    let missing = state.agents.request(system, command(&["steward-no-such-program"]), timeout).await;
    let Err(AgentRequestError::Agent(message)) = missing else { panic!("expected the agent's refusal: {missing:?}") };
    assert!(message.contains("\"steward-no-such-program\""), "{message}");

    let inventory = state.agents.request(system, AgentRequest::CollectInventory, timeout).await;
    let Ok(AgentResponse::Inventory(inventory)) = inventory else { panic!("no inventory: {inventory:?}") };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(inventory.host.hostname, hostname.trim());
    assert_eq!(state.agents.pending.len(), 0);
}
