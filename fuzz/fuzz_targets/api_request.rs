//! Request decoding of the API server: body decoding by content type, admission of the decoded
//! object for a resource picked by the first byte, and the three patch formats.
#![no_main]

use kontti_apiserver::{admission, api, patch, query, resources};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ct = CONTENT_TYPES[pick as usize % CONTENT_TYPES.len()];
    let Ok(mut value) = api::decode_body(ct, body) else {
        return;
    };
    let def =
        &resources::RESOURCES[(pick as usize / CONTENT_TYPES.len()) % resources::RESOURCES.len()];
    let mut target = value.clone();
    let _ = patch::json_patch(&mut target, &value);
    let _ = patch::strategic_merge(&mut target, &value);
    patch::merge_patch(&mut target, &value);
    if admission::check_type(def, &mut value).is_ok() {
        let _ = admission::unknown_fields(def, &mut value, query::FieldValidation::Warn);
        admission::generate_name(&mut value);
        admission::apply_defaults(def, &mut value);
        let _ = admission::validate(def, &value);
    }
});
