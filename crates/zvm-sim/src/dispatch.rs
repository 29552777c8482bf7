//! From a request frame to its answer: the table of modelled functions, then, in the order the SMAPI server
//! applies them, the function check (900/12 for a function the simulator does not model), authentication
//! (120/0), authorization (100/16; not for `Check_Authentication` and `Response_Recovery`), the injected faults
//! (a one-shot failure, DirMaint down: 500/8 for the `_DM` functions), and the function itself under the state
//! lock. A change is written to the state file before the reply goes out.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use smapi::RequestFrame;
use smapi::server::{OutputWriter, ParameterReader};
use tokio::sync::Notify;
use tracing::{error, info};

use crate::answer::{Answer, Context, Outcome, RC_AUTHENTICATION, RC_DIRECTORY_MANAGER, RC_NOT_AUTHORIZED, RC_SERVER};
use crate::config::Timing;
use crate::faults::Faults;
use crate::guests::Deactivation;
use crate::state::State;
use crate::{auth, directory, disks, guests, networks, operations, pools};

/// A modelled function's handler.
type Handler = fn(&mut State, &Context, &mut ParameterReader<'_>) -> Outcome;

/// How a function is carried out.
#[derive(Clone, Copy)]
enum Kind {
    /// Reads the state only.
    Query(Handler),
    /// May change the state.
    Change(Handler),
    CheckAuthentication,
    ResponseRecovery,
    Deactivate,
}

/// Every function the simulator models.
const FUNCTIONS: &[(&str, Kind)] = &[
    ("Check_Authentication", Kind::CheckAuthentication),
    ("Query_API_Functional_Level", Kind::Query(api_level)),
    ("System_Info_Query", Kind::Query(system_info)),
    ("Response_Recovery", Kind::ResponseRecovery),
    ("Query_Asynchronous_Operation_DM", Kind::Change(operations::query)),
    ("Image_Name_Query_DM", Kind::Query(directory::name_query)),
    ("Image_Query_DM", Kind::Query(directory::query)),
    ("Image_Create_DM", Kind::Change(directory::create)),
    ("Image_Delete_DM", Kind::Change(directory::delete)),
    ("Image_Lock_DM", Kind::Change(directory::lock)),
    ("Image_Unlock_DM", Kind::Change(directory::unlock)),
    ("Image_Replace_DM", Kind::Change(directory::replace)),
    ("Image_Definition_Query_DM", Kind::Query(directory::keywords::definition_query)),
    ("Image_Definition_Update_DM", Kind::Change(directory::keywords::definition_update)),
    ("Image_Volume_Space_Query_DM", Kind::Query(pools::volume_space_query)),
    ("Image_Disk_Create_DM", Kind::Change(disks::create)),
    ("Image_Disk_Copy_DM", Kind::Change(disks::copy)),
    ("Image_Disk_Delete_DM", Kind::Change(disks::delete)),
    ("Image_Activate", Kind::Change(guests::activate)),
    ("Image_Deactivate", Kind::Deactivate),
    ("Image_Status_Query", Kind::Query(guests::status_query)),
    ("Image_Active_Configuration_Query", Kind::Query(guests::active_configuration_query)),
    ("Virtual_Network_Vswitch_Create_Extended", Kind::Change(networks::vswitch_create)),
    ("Virtual_Network_Vswitch_Set_Extended", Kind::Change(networks::vswitch_set)),
    ("Virtual_Network_Vswitch_Delete_Extended", Kind::Change(networks::vswitch_delete)),
    ("Virtual_Network_Vswitch_Query_Extended", Kind::Query(networks::vswitch_query)),
    ("Virtual_Network_Adapter_Create_Extended_DM", Kind::Change(networks::adapter_create_dm)),
    ("Virtual_Network_Adapter_Connect_Vswitch_DM", Kind::Change(networks::adapter_connect_dm)),
    ("Virtual_Network_Adapter_Delete_DM", Kind::Change(networks::adapter_delete_dm)),
    ("Virtual_Network_Adapter_Connect_Vswitch", Kind::Change(networks::adapter_connect)),
];

/// The names of the modelled functions.
pub fn modelled_functions() -> impl Iterator<Item = &'static str> {
    FUNCTIONS.iter().map(|(name, _)| *name)
}

/// `Query_API_Functional_Level`: the level is the reason code.
fn api_level(state: &mut State, _context: &Context, _reader: &mut ParameterReader<'_>) -> Outcome {
    Ok(Answer::code(0, state.system.api_level))
}

/// `System_Info_Query`: six NUL-terminated strings (time zone, clock, CP level, generation time, IPL time,
/// storage), in UTC.
fn system_info(state: &mut State, context: &Context, _reader: &mut ParameterReader<'_>) -> Outcome {
    let clock = |seconds: u64| -> (String, String, String) {
        let time = time::OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).unwrap_or(0))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let date = format!("{:04}-{:02}-{:02}", time.year(), u8::from(time.month()), time.day());
        let hours = format!("{:02}:{:02}:{:02}", time.hour(), time.minute(), time.second());
        (date, hours, time.weekday().to_string().to_uppercase())
    };
    let (date, hours, weekday) = clock(context.now_millis() / 1000);
    let (ipl_date, ipl_hours, _) = clock(state.system.ipl_time);
    let mut output = OutputWriter::new();
    output
        .nul_terminated("UTC East 00.00.00")
        .nul_terminated(&format!("{hours} UTC {weekday} {date}"))
        .nul_terminated(&state.system.cp_level)
        .nul_terminated(&format!("{ipl_date} {ipl_hours} UTC"))
        .nul_terminated(&format!("{ipl_date} {ipl_hours} UTC"))
        .nul_terminated(&state.system.storage);
    Ok(Answer::output(output))
}

/// What became of one request.
pub(crate) struct Handled {
    pub(crate) answer: Answer,
    /// The authenticated caller, when the reply is one `Response_Recovery` may return later.
    pub(crate) caller: Option<String>,
    /// For a recovered reply: the request id it originally answered.
    pub(crate) original_request_id: Option<u32>,
}

enum Answered {
    Fresh(Answer, Option<String>),
    Recovered(Answer, Option<u32>),
}

/// A reply kept for `Response_Recovery`.
struct Recorded {
    request_id: u32,
    caller: String,
    answer: Answer,
}

/// How many replies `Response_Recovery` can recover.
const RECOVERABLE_REPLIES: usize = 1024;

/// Everything the connections share.
pub(crate) struct Shared {
    state: Mutex<State>,
    faults: Mutex<Faults>,
    recent: Mutex<VecDeque<Recorded>>,
    state_file: Option<PathBuf>,
    timing: Timing,
    /// Woken when an asynchronous operation starts, so the operations task looks at its end time.
    pub(crate) operations_changed: Notify,
}

/// Locks a mutex; a panic while it was held does not make the simulator unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn new(state: State, faults: Faults, state_file: Option<PathBuf>, timing: Timing) -> Shared {
        Shared {
            state: Mutex::new(state),
            faults: Mutex::new(faults),
            recent: Mutex::new(VecDeque::new()),
            state_file,
            timing,
            operations_changed: Notify::new(),
        }
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    /// Runs `change` on the state and saves it.
    pub(crate) fn with_state<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let mut state = lock(&self.state);
        let result = change(&mut state);
        self.persist(&state);
        self.operations_changed.notify_one();
        result
    }

    pub(crate) fn snapshot(&self) -> State {
        lock(&self.state).clone()
    }

    /// Writes the state file (under the state lock, so writes never overtake each other).
    fn persist(&self, state: &State) {
        if let Some(Err(failure)) = self.state_file.as_ref().map(|path| state.save(path)) {
            error!(error = %crate::error_chain(&failure), "the state change is in memory only");
        }
    }

    /// Finishes the operations that are due; returns when the next one ends.
    pub(crate) fn complete_operations(&self) -> Option<u64> {
        let mut state = lock(&self.state);
        if operations::complete_due(&mut state, crate::answer::millis(SystemTime::now())) {
            self.persist(&state);
        }
        state.operations.next_end()
    }

    /// Remembers a reply for `Response_Recovery`.
    pub(crate) fn record(&self, request_id: u32, caller: &str, answer: &Answer) {
        let mut recent = lock(&self.recent);
        if recent.len() >= RECOVERABLE_REPLIES {
            recent.pop_front();
        }
        recent.push_back(Recorded { request_id, caller: caller.to_owned(), answer: answer.clone() });
    }

    /// Whether the next request of `function` is to lose its reply (a one-shot fault).
    pub(crate) fn take_drop(&self, function: &str) -> bool {
        self.faults().take_drop(function)
    }

    pub(crate) fn reply_delay(&self) -> Option<Duration> {
        self.faults().reply_delay
    }

    /// Answers one request.
    pub(crate) async fn handle(&self, frame: &RequestFrame) -> Handled {
        let (answer, caller) = match self.answer(frame).await {
            Answered::Recovered(answer, original) => {
                return Handled { answer, caller: None, original_request_id: original };
            }
            Answered::Fresh(answer, caller) => (answer, caller),
        };
        Handled { answer, caller, original_request_id: None }
    }

    async fn answer(&self, frame: &RequestFrame) -> Answered {
        let Some(kind) = FUNCTIONS.iter().find(|(name, _)| *name == frame.function).map(|(_, kind)| *kind) else {
            info!(function = %frame.function, "function not modelled; answering 900/12");
            return Answered::Fresh(Answer::code(RC_SERVER, 12), None);
        };
        let caller = frame.userid.to_uppercase();
        let target = frame.target.to_uppercase();
        {
            let state = lock(&self.state);
            if !auth::authenticate(&state, &frame.userid, &frame.password) {
                return Answered::Fresh(Answer::code(RC_AUTHENTICATION, 0), None);
            }
            let needs_authorization = !matches!(kind, Kind::CheckAuthentication | Kind::ResponseRecovery);
            if needs_authorization && !auth::authorize(&state, &caller, &target, &frame.function) {
                return Answered::Fresh(Answer::code(RC_NOT_AUTHORIZED, 16), Some(caller));
            }
        }
        let fail_operation = {
            let mut faults = self.faults();
            if let Some(failure) = faults.take_failure(&frame.function) {
                info!(function = %frame.function, failure.return_code, failure.reason_code, "injected failure");
                return Answered::Fresh(Answer::code(failure.return_code, failure.reason_code), Some(caller));
            }
            if faults.dirmaint_unavailable && frame.function.ends_with("_DM") {
                return Answered::Fresh(Answer::code(RC_DIRECTORY_MANAGER, 8), Some(caller));
            }
            faults.fail_operation_once.iter().any(|function| function.eq_ignore_ascii_case(&frame.function))
        };
        let context = Context {
            caller: caller.clone(),
            target,
            function: frame.function.clone(),
            timing: self.timing.clone(),
            now: SystemTime::now(),
            fail_operation,
        };
        let mut reader = ParameterReader::new(&frame.parameters);
        let answer = match kind {
            Kind::CheckAuthentication => Answer::ok(),
            Kind::ResponseRecovery => {
                let (answer, original) = self.recover(&caller, &mut reader);
                return Answered::Recovered(answer, original);
            }
            Kind::Query(handler) => {
                let mut state = lock(&self.state);
                handler(&mut state, &context, &mut reader).unwrap_or_else(|failure| failure)
            }
            Kind::Change(handler) => self.change(&context, &mut reader, handler),
            Kind::Deactivate => self.deactivate(&context, &mut reader).await,
        };
        Answered::Fresh(answer, Some(caller))
    }

    /// Runs a changing handler and saves the state when it succeeded.
    fn change(&self, context: &Context, reader: &mut ParameterReader<'_>, handler: Handler) -> Answer {
        let mut state = lock(&self.state);
        let operations_before = state.operations.next_id;
        match handler(&mut state, context, reader) {
            Ok(answer) => {
                if state.operations.next_id != operations_before {
                    if context.fail_operation {
                        self.faults().take_operation_failure(&context.function);
                    }
                    self.operations_changed.notify_one();
                }
                self.persist(&state);
                answer
            }
            Err(failure) => failure,
        }
    }

    /// `Image_Deactivate`: waits out the guest's shutdown without holding the state.
    async fn deactivate(&self, context: &Context, reader: &mut ParameterReader<'_>) -> Answer {
        let step = {
            let mut state = lock(&self.state);
            let step = guests::begin_deactivation(&mut state, context, reader);
            if step.is_ok() {
                self.persist(&state);
            }
            step
        };
        match step {
            Err(failure) => failure,
            Ok(Deactivation::Done(answer)) => answer,
            Ok(Deactivation::After(wait)) => {
                tokio::time::sleep(wait).await;
                let mut state = lock(&self.state);
                let answer = guests::finish_deactivation(&mut state, &context.target, wait);
                self.persist(&state);
                answer
            }
        }
    }

    /// `Response_Recovery`: the reply of an earlier request of the same user and its request id, or 4/4.
    fn recover(&self, caller: &str, reader: &mut ParameterReader<'_>) -> (Answer, Option<u32>) {
        let request_id = match reader.int4() {
            Ok(request_id) => request_id as u32,
            Err(error) => return (error.into(), None),
        };
        let recent = lock(&self.recent);
        recent
            .iter()
            .rev()
            .find(|recorded| recorded.request_id == request_id && recorded.caller == caller)
            .map(|recorded| (recorded.answer.clone(), Some(request_id)))
            .unwrap_or_else(|| (Answer::code(crate::answer::RC_WARNING, 4), None))
    }
}
