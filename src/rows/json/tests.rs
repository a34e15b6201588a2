//! The reader against serde_json and byte-by-byte references.

use super::*;

fn skip_all(s: &[u8]) -> Res<usize> {
    let mut r = Reader::new(s);
    let v = r.skip_value()?.len();
    r.finish()?;
    Ok(v)
}

#[test]
fn skips_and_validates_like_serde() {
    let ok: &[&str] = &[
        r#"{}"#,
        r#"[]"#,
        r#"{"a":[1,2,{"b":null}],"c":"x\u00e9\n","d":-0.5e+3,"e":true}"#,
        r#" [ 1 , "two" , [ ] , { } ] "#,
        r#""\ud83d\ude00""#,
        "\"caf\u{e9} \u{1F600}\"",
    ];
    for s in ok {
        assert!(serde_json::from_str::<serde_json::Value>(s).is_ok());
        assert!(skip_all(s.as_bytes()).is_ok(), "{s}");
    }
    let bad: &[&[u8]] = &[
        b"{",
        b"[1,]",
        b"{\"a\" 1}",
        b"{\"a\":1,}",
        b"01",
        b"1.",
        b"-",
        b"\"\\ud800\"",
        b"\"\\x\"",
        b"\"a\nb\"",
        b"\"\xff\"",
        b"{\"\xff\":1}",
        b"tru",
        b"[1] x",
        b"{\"a\":1}}",
        b"nul",
    ];
    for s in bad {
        assert!(skip_all(s).is_err(), "{}", String::from_utf8_lossy(s));
    }
}

/// JSON text: scalars (strings with escapes and multibyte text), arrays
/// and objects nested a few levels.
fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    const STRING: &str = r#""([a-z é東😀]|\\["\\/bfnrt]|\\u00e9|\\ud83d\\ude00){0,6}""#;
    let string = || proptest::string::string_regex(STRING).expect("regex");
    let number = proptest::string::string_regex(
        r"-?(0|[1-9][0-9]{0,3})(\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
    )
    .expect("regex");
    let leaf = prop_oneof![string(), number, Just("true".into()), Just("null".into())];
    leaf.prop_recursive(4, 32, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec((string(), inner), 0..4).prop_map(|v| {
                let members: Vec<String> =
                    v.into_iter().map(|(k, v)| format!("{k} : {v}")).collect();
                format!("{{{}}}", members.join(", "))
            }),
        ]
    })
}

proptest::proptest! {
    /// skip_value accepts exactly what serde_json parses, on valid JSON
    /// and on JSON with one character removed, replaced or inserted.
    #[test]
    fn skip_value_agrees_with_serde(
        text in json_text(),
        edit in proptest::option::of((0usize..200, 0usize..3, proptest::char::any())),
    ) {
        let mut chars: Vec<char> = text.chars().collect();
        if let Some((at, how, c)) = edit {
            let at = at % (chars.len() + 1);
            match how {
                0 if at < chars.len() => { chars.remove(at); }
                1 if at < chars.len() => chars[at] = c,
                _ => chars.insert(at, c),
            }
        }
        let s: String = chars.into_iter().collect();
        let serde = serde_json::from_str::<serde_json::Value>(&s).is_ok();
        let ours = skip_all(s.as_bytes());
        proptest::prop_assert_eq!(ours.is_ok(), serde, "{:?}: {:?}", s, ours);
        if serde {
            proptest::prop_assert_eq!(ours.ok(), Some(s.trim_end().len() - (s.len() - s.trim_start().len())));
        }
    }

    /// Invalid UTF-8 anywhere in a skipped string or key is refused.
    #[test]
    fn skip_value_refuses_invalid_utf8(text in json_text(), at in 0usize..200, bad in 0x80u8..=0xff) {
        let mut b = text.into_bytes();
        let at = at % (b.len() + 1);
        b.insert(at, bad);
        let serde_ok = std::str::from_utf8(&b).is_ok()
            && serde_json::from_slice::<serde_json::Value>(&b).is_ok();
        proptest::prop_assert_eq!(skip_all(&b).is_ok(), serde_ok);
    }
}

proptest::proptest! {
    /// Strings read after the one-pass tail check are exactly what a
    /// per-string check gives: the same values, and an invalid byte
    /// refused in the same string (serde_json reading each string alone
    /// is the reference).
    #[test]
    fn strings_after_the_tail_check_match_per_string_checks(
        strs in proptest::collection::vec(proptest::string::string_regex(r#"([a-z é東😀]|\\["\\/nt]|\\u00e9){0,12}"#).expect("regex"), 1..6),
        bad in proptest::option::of((0usize..6, 0usize..40, 0x80u8..=0xff)),
    ) {
        let mut texts: Vec<Vec<u8>> = strs.iter().map(|s| format!("\"{s}\"").into_bytes()).collect();
        if let Some((which, at, byte)) = bad {
            let n = texts.len();
            let t = &mut texts[which % n];
            let at = 1 + at % (t.len() - 1);
            t.insert(at, byte);
        }
        let mut record = b"[".to_vec();
        for (i, t) in texts.iter().enumerate() {
            if i > 0 {
                record.push(b',');
            }
            record.extend_from_slice(t);
        }
        record.push(b']');
        let mut r = Reader::new(&record);
        let mut scratch = Vec::new();
        r.begin_array().unwrap();
        let mut first = true;
        for t in &texts {
            proptest::prop_assert!(r.next_element(&mut first).unwrap());
            let ours = r.read_str_bytes(&mut scratch).map(<[u8]>::to_vec);
            let reference = serde_json::from_slice::<String>(t);
            proptest::prop_assert_eq!(ours.is_ok(), reference.is_ok(), "{:?}", String::from_utf8_lossy(t));
            match (ours, reference) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b.into_bytes()),
                _ => break,
            }
        }
    }
}

#[test]
fn strings_borrow_or_decode() {
    let mut scratch = Vec::new();
    let mut r = Reader::new(br#""plain text that is longer than eight""#);
    assert_eq!(r.read_str(&mut scratch).unwrap(), "plain text that is longer than eight");
    let mut r = Reader::new(br#""tab\tquote\" slash\/ \u00e9\ud83d\ude00""#);
    assert_eq!(r.read_str(&mut scratch).unwrap(), "tab\tquote\" slash/ \u{e9}\u{1F600}");
}

#[test]
fn scan_stops_at_the_first_quote_escape_or_control_byte() {
    // Every stop byte at every offset of a word and across words, after
    // bytes that trip the word tests' borrow (0x00-0x01, 0x80+, 0x21-0x23).
    for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
        for len in 0..50 {
            for filler in [b'a', 0x80, 0x21, 0x23, 0xff, 0x7f, 0x20] {
                let mut s = vec![filler; len];
                s.push(stop);
                s.extend_from_slice(b"\"\\x");
                let r = Reader::new(&s);
                let naive = s.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
                let ascii = s.get(..len).is_some_and(|b| b.is_ascii());
                assert_eq!(r.scan_plain(), (len, stop != b'"', ascii), "{s:?}");
                assert_eq!(naive, Some(len));
            }
        }
    }
}

proptest::proptest! {
    /// The SSE2 and word loops stop where a byte-by-byte scan stops, with
    /// the same ASCII verdict, from any start, on bytes dense in stops,
    /// high bytes and near-misses (0x1f/0x20, 0x21-0x23, 0x5b-0x5d, 0x7f-0x80).
    #[test]
    fn scan_plain_matches_a_byte_scan(
        bytes in proptest::collection::vec(proptest::prop_oneof![
            proptest::sample::select(vec![b'"', b'\\', 0x00, 0x1f, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xc3, 0xff]),
            b'a'..=b'z',
            proptest::num::u8::ANY,
        ], 0..80),
        ascii_run in 0usize..64,
        start in 0usize..80,
    ) {
        let mut s = vec![b'x'; ascii_run];
        s.extend_from_slice(&bytes);
        let mut r = Reader::new(&s);
        r.pos = start.min(s.len());
        proptest::prop_assert_eq!(r.scan_plain(), r.scan_plain_naive(), "{:?} from {}", s, r.pos);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = "[".repeat(100_000);
    assert!(skip_all(deep.as_bytes()).is_err());
    let ok = format!("{}{}", "[".repeat(500), "]".repeat(500));
    assert!(skip_all(ok.as_bytes()).is_ok());
}

#[test]
fn object_iteration() {
    let mut r = Reader::new(br#"{"a": 1, "b" : [true, null]}"#);
    let mut scratch = Vec::new();
    r.begin_object().unwrap();
    let mut first = true;
    assert_eq!(r.next_key(&mut first, &mut scratch).unwrap(), Some(&b"a"[..]));
    assert_eq!(r.read_number().unwrap(), "1");
    assert_eq!(r.next_key(&mut first, &mut scratch).unwrap(), Some(&b"b"[..]));
    r.begin_array().unwrap();
    let mut f2 = true;
    assert!(r.next_element(&mut f2).unwrap());
    assert!(r.read_bool().unwrap());
    assert!(r.next_element(&mut f2).unwrap());
    assert_eq!(r.peek().unwrap(), Kind::Null);
    r.read_null().unwrap();
    assert!(!r.next_element(&mut f2).unwrap());
    assert_eq!(r.next_key(&mut first, &mut scratch).unwrap(), None);
    r.finish().unwrap();
}

#[test]
fn take_key_consumes_only_the_exact_raw_key() {
    let mut r = Reader::new(br#"{ "ab" : 1 , "a\u0062": 2, "abc": 3, "ab" 4}"#);
    let mut scratch = Vec::new();
    r.begin_object().unwrap();
    let mut first = true;
    assert!(!r.take_key(&mut first, b"a").unwrap(), "a prefix is not the key");
    assert!(first, "nothing consumed");
    assert!(r.take_key(&mut first, b"ab").unwrap());
    assert_eq!(r.read_number().unwrap(), "1");
    // Escaped spelling: left for next_key, which decodes it.
    assert!(!r.take_key(&mut first, b"ab").unwrap());
    assert_eq!(r.next_key(&mut first, &mut scratch).unwrap(), Some(&b"ab"[..]));
    assert_eq!(r.read_number().unwrap(), "2");
    assert!(!r.take_key(&mut first, b"ab").unwrap(), "a longer key");
    assert_eq!(r.next_key(&mut first, &mut scratch).unwrap(), Some(&b"abc"[..]));
    assert_eq!(r.read_number().unwrap(), "3");
    assert!(r.take_key(&mut first, b"ab").is_err(), "missing ':'");
}

/// Taking a plain string by its body leaves the cursor where reading it
/// does; a value that is not a string has no body.
#[test]
fn str_body_then_take_is_read_str() {
    for s in [&br#" "12.5" ,1"#[..], br#""" ]"#, br#""-0.5"}"#] {
        let mut read = Reader::new(s);
        let text = read.read_str(&mut Vec::new()).map(str::len);
        let mut taken = Reader::new(s);
        let body = taken.str_body().expect("a string");
        let len = body.iter().position(|&c| c == b'"').expect("closed");
        taken.take_str_body(len);
        assert_eq!(text, Ok(len));
        assert_eq!(taken.pos(), read.pos(), "{}", String::from_utf8_lossy(s));
    }
    for s in [&b" 12"[..], b"null", b"", b"{\"a\":1}"] {
        assert_eq!(Reader::new(s).str_body(), None);
    }
}
