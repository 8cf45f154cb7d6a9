//! The Rust codec against the vectors the JS codec is also tested against.
use shared_kv_store::codec::{decode, encode, MAX_DEPTH};
use shared_kv_store::Value;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn rust_codec_writes_and_reads_every_shared_vector() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/__test__/vectors.json"
    ))
    .unwrap();
    let vectors: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(vectors.len() > 50);
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let value = Value::from_tagged_json(&v["value"]).unwrap();
        let bytes = unhex(v["hex"].as_str().unwrap());
        assert_eq!(
            hex(&encode(&value).unwrap()),
            hex(&bytes),
            "encoding {name}"
        );
        let back = decode(&bytes).unwrap();
        assert!(back.same(&value), "decoding {name}: {back:?}");
        assert_eq!(back.to_tagged_json(), v["value"], "tagged form of {name}");
    }
}

#[test]
fn decoder_refuses_truncated_oversized_and_too_deep_input() {
    assert!(decode(&[0x92, 0x01]).is_err(), "array missing an item");
    assert!(
        decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err(),
        "forged count"
    );
    assert!(
        decode(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']).is_err(),
        "forged string length"
    );
    assert!(decode(&[0xc1]).is_err());
    assert!(decode(&[0x01, 0x02]).is_err(), "trailing bytes");
    assert!(decode(&[0xd4, 0x42, 0x00]).is_err(), "unknown extension");
    let deep = |n: usize| [vec![0x91; n], vec![0x00]].concat();
    assert!(decode(&deep(MAX_DEPTH)).is_ok());
    assert!(decode(&deep(MAX_DEPTH + 1)).is_err());
    // Far deeper than any stack could recurse: refused, not a stack overflow.
    assert!(decode(&deep(1_000_000)).is_err());
}

#[test]
fn a_map_with_non_string_keys_decodes_as_a_map() {
    let v = decode(&[0x82, 0xa1, b'a', 0x01, 0x02, 0x03]).unwrap();
    assert!(v.same(&Value::Map(vec![
        (Value::String("a".into()), Value::Number(1.0)),
        (Value::Number(2.0), Value::Number(3.0))
    ])));
}

#[test]
fn random_bytes_never_panic() {
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..20_000 {
        let len = (x % 64) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if let Ok(v) = decode(&bytes) {
            // Whatever decodes re-encodes and decodes to the same value.
            let again = decode(&encode(&v).unwrap()).unwrap();
            assert!(again.same(&v), "{bytes:?}");
        }
    }
}
