//! Property tests of the decoders against what a broken or hostile server could send: arbitrary bytes, and the
//! recorded z/VM replies with bytes flipped, lengths rewritten and tails cut off. Nothing may panic, a failure
//! must name the field and offset, and the interpreter's layouts must always agree with the typed outputs (a
//! `LayoutMismatch` would be a bug in the crate, never a fault of the input).

mod support;

use proptest::prelude::*;
use smapi::functions::*;
use smapi::response::DEFAULT_MAX_OUTPUT_BYTES;
use smapi::{DecodeError, Reply, RequestFrame, SmapiRequest, encode_request};

/// Decodes `reply` as every implemented function would, success and failure paths both.
fn decode_everything(reply: &Reply) -> Vec<(&'static str, Result<(), DecodeError>)> {
    fn run<R: SmapiRequest>(reply: &Reply) -> (&'static str, Result<(), DecodeError>) {
        let diagnostics = R::error_diagnostics(reply);
        assert!(diagnostics.iter().all(|line| line.len() <= reply.output.len() + 64));
        (R::FUNCTION, R::decode_output(reply).map(drop))
    }
    vec![
        run::<CheckAuthentication>(reply),
        run::<QueryApiFunctionalLevel>(reply),
        run::<SystemInfoQuery>(reply),
        run::<SystemInformationQuery>(reply),
        run::<QueryAsynchronousOperationDm>(reply),
        run::<ResponseRecovery>(reply),
        run::<ImageStatusQuery>(reply),
        run::<ImageActivate>(reply),
        run::<ImageDeactivate>(reply),
        run::<ImageActiveConfigurationQuery>(reply),
        run::<ImageNameQueryDm>(reply),
        run::<ImageQueryDm>(reply),
        run::<ImageDefinitionQueryDm>(reply),
        run::<ImageDefinitionUpdateDm>(reply),
        run::<ImageDefinitionCreateDm>(reply),
        run::<ImageDefinitionDeleteDm>(reply),
        run::<ImageCreateDm>(reply),
        run::<ImageDeleteDm>(reply),
        run::<ImageLockDm>(reply),
        run::<ImageUnlockDm>(reply),
        run::<ImageReplaceDm>(reply),
        run::<ImageDiskCreateDm>(reply),
        run::<ImageDiskCopyDm>(reply),
        run::<ImageDiskDeleteDm>(reply),
        run::<ImageVolumeSpaceQueryDm>(reply),
        run::<ImageDiskQuery>(reply),
        run::<ImageDiskCreate>(reply),
        run::<VirtualNetworkAdapterCreateExtendedDm>(reply),
        run::<VirtualNetworkAdapterConnectVswitchDm>(reply),
        run::<VirtualNetworkAdapterConnectVswitch>(reply),
        run::<VirtualNetworkAdapterDeleteDm>(reply),
        run::<VirtualNetworkVswitchCreateExtended>(reply),
        run::<VirtualNetworkVswitchSetExtended>(reply),
        run::<VirtualNetworkVswitchDeleteExtended>(reply),
        run::<VirtualNetworkVswitchQueryExtended>(reply),
    ]
}

/// A decode failure must say which field failed where, and must come from the input, not from the crate.
fn assert_located(function: &str, error: &DecodeError, output_length: usize) {
    let message = error.to_string();
    match error {
        DecodeError::Truncated { field, offset, .. }
        | DecodeError::NegativeLength { field, offset, .. }
        | DecodeError::Unterminated { field, offset }
        | DecodeError::Invalid { field, offset, .. } => {
            assert!(!field.is_empty(), "{function}: error without a field name: {message}");
            assert!(*offset <= output_length, "{function}: offset {offset} beyond {output_length} bytes: {message}");
            assert!(message.contains(field.as_str()) && message.contains("offset"), "{function}: {message}");
        }
        DecodeError::LayoutMismatch { .. } => panic!("{function}: layout and typed output disagree: {message}"),
        other => panic!("{function}: unexpected error for output data: {other}"),
    }
}

fn check_all(reply: &Reply) {
    for (function, result) in decode_everything(reply) {
        if let Err(error) = result {
            assert_located(function, &error, reply.output.len());
        }
    }
}

/// A change to a recorded reply.
#[derive(Debug, Clone)]
enum Mutation {
    /// Overwrites four bytes at a position with a value chosen to hurt (huge, negative, zero, off by one).
    Word { position: usize, value: u32 },
    /// Flips the bits of one byte.
    Flip { position: usize, mask: u8 },
    /// Cuts the output after this many bytes.
    Truncate { keep: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let word_value =
        prop_oneof![Just(u32::MAX), Just(0x7fff_ffff), Just(0x8000_0000), Just(0), Just(1), 0u32..64, any::<u32>(),];
    prop_oneof![
        (any::<usize>(), word_value).prop_map(|(position, value)| Mutation::Word { position, value }),
        (any::<usize>(), 1u8..=255).prop_map(|(position, mask)| Mutation::Flip { position, mask }),
        any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
    ]
}

fn apply(output: &mut Vec<u8>, mutation: &Mutation) {
    if output.is_empty() {
        return;
    }
    match *mutation {
        Mutation::Word { position, value } => {
            let start = (position % output.len()) & !3;
            for (index, byte) in value.to_be_bytes().iter().enumerate() {
                if let Some(slot) = output.get_mut(start + index) {
                    *slot = *byte;
                }
            }
        }
        Mutation::Flip { position, mask } => {
            let index = position % output.len();
            output[index] ^= mask;
        }
        Mutation::Truncate { keep } => output.truncate(keep % output.len()),
    }
}

fn recorded_replies() -> &'static [Reply] {
    static REPLIES: std::sync::OnceLock<Vec<Reply>> = std::sync::OnceLock::new();
    REPLIES.get_or_init(|| {
        support::cached_vectors().iter().filter_map(|vector| Reply::parse(&vector.response).ok()).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_reply_frames_never_panic(frame in prop::collection::vec(any::<u8>(), 0..256)) {
        match Reply::parse(&frame) {
            Ok(reply) => check_all(&reply),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    #[test]
    fn arbitrary_outputs_never_panic(
        output in prop::collection::vec(any::<u8>(), 0..1024),
        return_code in prop_oneof![Just(0), Just(592), Just(8), Just(200), any::<i32>()],
        reason_code in prop_oneof![Just(0), Just(4), Just(12), any::<i32>()],
    ) {
        let reply = Reply { request_id: 1, reply_request_id: 1, return_code, reason_code, output };
        check_all(&reply);
        let frame = reply.encode();
        prop_assert_eq!(Reply::parse(&frame).unwrap(), reply);
    }

    #[test]
    fn mutated_recorded_replies_never_panic(
        index in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut reply = index.get(recorded_replies()).clone();
        for mutation in &mutations {
            apply(&mut reply.output, mutation);
        }
        check_all(&reply);
    }

    #[test]
    fn mutated_reply_headers_are_refused_cleanly(
        index in any::<prop::sample::Index>(),
        mutation in mutation(),
    ) {
        let mut frame = index.get(support::cached_vectors()).response.clone();
        apply(&mut frame, &mutation);
        if let Ok(reply) = Reply::parse_with_limit(&frame, DEFAULT_MAX_OUTPUT_BYTES) {
            prop_assert_eq!(reply.output.len() + 20, frame.len());
            check_all(&reply);
        }
    }

    #[test]
    fn arbitrary_request_frames_never_panic(frame in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(parsed) = RequestFrame::parse(&frame) {
            prop_assert!(parsed.parameters.len() <= frame.len());
        }
    }

    #[test]
    fn requests_parse_back(
        target in "[A-Z0-9@#$]{1,8}",
        keywords in prop::collection::vec("[A-Z_=0-9 ]{1,40}", 1..6),
    ) {
        let request = ImageDefinitionUpdateDm::new(target.clone(), keywords.clone());
        let frame = encode_request(&request, &support::recorded_credentials()).unwrap();
        let parsed = RequestFrame::parse(&frame).unwrap();
        prop_assert_eq!(parsed.function, "Image_Definition_Update_DM");
        prop_assert_eq!(parsed.target, target);
        let list_length = u32::from_be_bytes(parsed.parameters[..4].try_into().unwrap()) as usize;
        prop_assert_eq!(list_length + 4, parsed.parameters.len());
        let entries = smapi::layout::split_nul_strings(&parsed.parameters[4..]);
        prop_assert_eq!(entries, keywords);
    }
}

#[test]
fn every_recorded_reply_decodes_as_its_own_function_or_fails_cleanly_as_others() {
    for reply in recorded_replies() {
        check_all(reply);
    }
}
