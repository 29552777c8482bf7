//! The recorded z/VM 7.1 exchanges (`shared/reference/smapi-vectors/`) replayed byte for byte against the
//! simulator, seeded with the entries they name: the return and reason codes must be the recorded ones, and
//! where the recorded reply does not depend on the recording system's contents (created, deleted, refused
//! keywords, the keyword view of the same entry, a status) the whole reply must be identical, request ids
//! aside (the recording zeroed them).

use std::path::PathBuf;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zvm_sim::directory::Entry;
use zvm_sim::directory::statements::Statement;
use zvm_sim::{AuthEntry, Simulator, SimulatorConfig};

struct Vector {
    name: String,
    request: Vec<u8>,
    response: Vec<u8>,
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|index| u8::from_str_radix(&text[index..index + 2], 16).expect("hex")).collect()
}

fn vectors() -> Vec<Vector> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/smapi-vectors/recorded-zvm71.json");
    let text = std::fs::read_to_string(&path).expect("the recorded exchanges");
    let all: Vec<Value> = serde_json::from_str(&text).expect("JSON");
    all.iter()
        .map(|vector| Vector {
            name: format!(
                "{}#{}",
                vector["function"].as_str().expect("function"),
                vector["case"].as_str().expect("case")
            ),
            request: hex(vector["request_hex"].as_str().expect("request")),
            response: hex(vector["response_hex"].as_str().expect("response")),
        })
        .collect()
}

/// Sends the recorded request and returns the reply with its request ids zeroed, as the recording has them.
async fn replay(simulator: &Simulator, vector: &Vector) -> Vec<u8> {
    let mut stream = TcpStream::connect(simulator.address()).await.expect("connect");
    stream.write_all(&vector.request).await.expect("send");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.expect("receive");
    assert!(reply.len() >= 20, "{}: short reply {reply:?}", vector.name);
    reply[..4].fill(0);
    reply[8..12].fill(0);
    reply
}

fn statements(lines: &[&str]) -> Vec<Statement> {
    lines.iter().map(|line| Statement::parse(line).expect("a statement")).collect()
}

#[tokio::test]
async fn recorded_requests_get_the_recorded_answers() {
    let vectors = vectors();
    let simulator =
        Simulator::start(SimulatorConfig::new("127.0.0.1:0".parse().expect("address"))).await.expect("starts");
    simulator.with_state(|state| {
        state.users.insert("MAINT".into(), "maint".into());
        state.authlist.push(AuthEntry::all("MAINT"));
        state.directory.entries.insert(
            "GT@PING".into(),
            Entry::new(statements(&[
                "USER GT@PING @SM8PI@ 1G 2G ABCDEFG",
                "IPL CMS",
                "  CONSOLE   0009 3215",
                "  SPOOL 00C 2540 READER *",
                "  SPOOL 00D 2540 PUNCH A",
                "  SPOOL 00E 1403 A",
                "  LINK MAINT 190 190 RR",
                "  LINK MAINT 19E 19E RR",
                "MDISK 0777 3390 2467 1000 LX3004 W READ WRITE MULTIPLE",
            ])),
        );
    });
    // In the order a session would issue them; `true` when the whole reply must match.
    let script: &[(&str, bool)] = &[
        ("Image_Definition_Query_DM#1", true),
        ("Image_Definition_Query_DM#2", true),
        ("Image_Definition_Query_DM#3", true),
        ("Image_Definition_Update_DM#1", true),
        ("Image_Definition_Update_DM#2", true),
        ("Image_Definition_Update_DM#3", true),
        ("Image_Create_DM#1", true),
        ("Image_Activate#1", true),
        ("Virtual_Network_Vswitch_Create_Extended#1", true),
        ("Virtual_Network_Vswitch_Create_Extended#3", true),
        ("Virtual_Network_Vswitch_Set_Extended#21", true),
        ("Virtual_Network_Vswitch_Set_Extended#5", true),
        ("Virtual_Network_Vswitch_Set_Extended#7", true),
        ("Virtual_Network_Vswitch_Set_Extended#2", true),
        ("Virtual_Network_Vswitch_Set_Extended#23", true),
        ("Virtual_Network_Adapter_Create_Extended_DM#1", true),
        ("Virtual_Network_Adapter_Connect_Vswitch_DM#1", true),
        ("Response_Recovery#1", true),
        ("Image_Name_Query_DM#1", false),
        ("Image_Query_DM#1", false),
        ("Image_Volume_Space_Query_DM#1", false),
        ("System_Info_Query#1", false),
        ("Virtual_Network_Vswitch_Query_Extended#1", false),
    ];
    let mut mismatches = Vec::new();
    for (name, exact) in script {
        let vector = vectors.iter().find(|vector| vector.name == *name).expect("a recorded vector");
        let reply = replay(&simulator, vector).await;
        let matches = if *exact { reply == vector.response } else { reply[12..20] == vector.response[12..20] };
        if !matches {
            mismatches.push(format!("{name}:\n  recorded {:02x?}\n  got      {:02x?}", vector.response, reply));
        }
    }
    // GT@PONG logged on for the status and configuration queries, then a lock for the replace.
    simulator.with_state(|state| state.authlist.push(AuthEntry::all("MAINT")));
    let activate = vectors.iter().find(|vector| vector.name == "Image_Activate#1").expect("activate");
    let mut pong = activate.request.clone();
    let at = pong.windows(7).rposition(|window| window == b"gt@ping").expect("the target");
    pong[at..at + 7].copy_from_slice(b"gt@pong");
    replay(&simulator, &Vector { name: "activate GT@PONG".into(), request: pong, response: Vec::new() }).await;
    for (name, exact) in
        [("Image_Status_Query#1", true), ("Image_Active_Configuration_Query#1", false), ("Image_Deactivate#1", true)]
    {
        let vector = vectors.iter().find(|vector| vector.name == name).expect("a recorded vector");
        let reply = replay(&simulator, vector).await;
        let matches = if exact { reply == vector.response } else { reply[12..20] == vector.response[12..20] };
        if !matches {
            mismatches.push(format!("{name}:\n  recorded {:02x?}\n  got      {:02x?}", vector.response, reply));
        }
    }
    simulator.with_state(|state| {
        let entry = state.directory.entries.get_mut("GT@PONG").expect("created by the replay");
        entry.statements.push(Statement::parse("MDISK 0888 3390 1457 10 LX3002 W").expect("a statement"));
    });
    for name in ["Image_Lock_DM#1", "Image_Unlock_DM#1"] {
        let vector = vectors.iter().find(|vector| vector.name == name).expect("a recorded vector");
        if replay(&simulator, vector).await != vector.response {
            mismatches.push(name.to_owned());
        }
    }
    simulator.with_state(|state| {
        state.directory.entries.get_mut("GT@PONG").expect("entry").lock = Some("MAINT".into());
    });
    for name in ["Image_Replace_DM#1", "Image_Delete_DM#1"] {
        let vector = vectors.iter().find(|vector| vector.name == name).expect("a recorded vector");
        if replay(&simulator, vector).await != vector.response {
            mismatches.push(name.to_owned());
        }
    }
    assert!(mismatches.is_empty(), "replies that differ from the recording:\n{}", mismatches.join("\n"));
    simulator.shutdown().await;
}
