#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    freshteam_operator::fuzzing::freshteam_response(data);
});
