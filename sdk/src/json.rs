//! Small JSON documents by hand: writing objects with correct string
//! escaping ([`Object`]), and reading flat ones ([`parse_flat`]).
//!
//! Enough for a program that answers with a flat object, reads a flat
//! request body or an event's payload, and wants no serializer in its
//! binary; reach for `serde_json` for anything nested.

use std::fmt::{self, Write};
use std::str::Chars;

/// Builds a JSON object one member at a time, in the order given.
///
/// ```
/// use miniapp_sdk::json;
///
/// let body = json::Object::new()
///     .string("name", "Ada \"the first\"")
///     .number("visits", 3)
///     .boolean("admin", false)
///     .raw("tags", "[]")
///     .finish();
/// assert_eq!(body, r#"{"name":"Ada \"the first\"","visits":3,"admin":false,"tags":[]}"#);
/// ```
#[derive(Debug, Clone)]
pub struct Object {
    text: String,
}

impl Object {
    /// An empty object.
    pub fn new() -> Self {
        // Room for a small response's members at once: the text otherwise
        // grows through several reallocations, each a copy.
        let mut text = String::with_capacity(128);
        text.push('{');
        Self { text }
    }

    /// Adds a string member, escaped.
    pub fn string(mut self, name: &str, value: &str) -> Self {
        self.member(name);
        write_quoted(&mut self.text, value);
        self
    }

    /// Adds a number member: any integer or float type (a float that is not
    /// finite has no JSON form and is written as `null`).
    pub fn number(mut self, name: &str, value: impl Into<Number>) -> Self {
        self.member(name);
        // Writing to a String cannot fail.
        let _ = value.into().write(&mut self.text);
        self
    }

    /// Adds a boolean member.
    pub fn boolean(self, name: &str, value: bool) -> Self {
        self.raw(name, if value { "true" } else { "false" })
    }

    /// Adds a member whose value is `json`, written as given: the caller
    /// vouches that it is valid JSON (a nested object's `finish()`, say).
    pub fn raw(mut self, name: &str, json: &str) -> Self {
        self.member(name);
        self.text.push_str(json);
        self
    }

    /// Starts the member `name`: the separator, the quoted name and `:`.
    fn member(&mut self, name: &str) {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        write_quoted(&mut self.text, name);
        self.text.push(':');
    }

    /// The finished document.
    pub fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

impl Default for Object {
    fn default() -> Self {
        Self::new()
    }
}

/// A JSON number, from any of Rust's integer or float types.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(NumberRepr);

#[derive(Debug, Clone, Copy, PartialEq)]
enum NumberRepr {
    Signed(i128),
    Unsigned(u128),
    Float(f64),
}

macro_rules! number_from {
    ($variant:ident as $wide:ty: $($ty:ty),*) => {
        $(impl From<$ty> for Number {
            fn from(value: $ty) -> Self {
                Number(NumberRepr::$variant(<$wide>::from(value)))
            }
        })*
    };
}

number_from!(Signed as i128: i8, i16, i32, i64, i128);
number_from!(Unsigned as u128: u8, u16, u32, u64, u128);
number_from!(Float as f64: f32, f64);

impl From<usize> for Number {
    fn from(value: usize) -> Self {
        Number(NumberRepr::Unsigned(value as u128))
    }
}

impl From<isize> for Number {
    fn from(value: isize) -> Self {
        Number(NumberRepr::Signed(value as i128))
    }
}

impl Number {
    /// Writes the number's JSON text to `out`. Generic, so that a caller
    /// that knows the number's type compiles only the formatting it needs.
    fn write(self, out: &mut impl Write) -> fmt::Result {
        match self.0 {
            NumberRepr::Signed(value) => write!(out, "{value}"),
            NumberRepr::Unsigned(value) => write!(out, "{value}"),
            NumberRepr::Float(value) if value.is_finite() => write!(out, "{value}"),
            NumberRepr::Float(_) => out.write_str("null"),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f)
    }
}

/// `text` as a JSON string literal, quotes included.
///
/// ```
/// assert_eq!(miniapp_sdk::json::quote("a\"b\n"), r#""a\"b\n""#);
/// ```
pub fn quote(text: &str) -> String {
    let mut quoted = String::new();
    write_quoted(&mut quoted, text);
    quoted
}

fn write_quoted(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    // Copies the runs between characters that need escaping whole. Every
    // such character is ASCII, so each run ends on a character boundary.
    let mut run_start = 0;
    for (index, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0C => Some("\\f"),
            control if control < b' ' => None,
            _ => continue,
        };
        out.push_str(&text[run_start..index]);
        run_start = index + 1;
        match escape {
            Some(escape) => out.push_str(escape),
            // Writing to a String cannot fail.
            None => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
    }
    out.push_str(&text[run_start..]);
    out.push('"');
}

/// A flat JSON object, read by [`parse_flat`]: its members in the order of
/// the text, each value a string, a number, a boolean or null.
///
/// ```
/// use miniapp_sdk::json::{self, Value};
///
/// let order = json::parse_flat(r#"{"product":"tea","quantity":2,"gift":false,"note":null}"#)?;
/// assert_eq!(order.str("product"), Some("tea"));
/// assert_eq!(order.u64("quantity"), Some(2));
/// assert_eq!(order.bool("gift"), Some(false));
/// assert_eq!(order.get("note"), Some(&Value::Null));
/// // Absent, or of another type: `None` either way; `get` tells them apart.
/// assert_eq!(order.u64("product"), None);
/// assert_eq!(order.get("colour"), None);
/// # Ok::<(), json::ParseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlatObject {
    members: Vec<(String, Value)>,
}

/// The value of one member of a [`FlatObject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string, unescaped.
    String(String),
    /// A number, as written in the text (`42`, `-7`, `1.5e3`): read it with
    /// [`Value::as_u64`] or [`Value::as_i64`], or parse it yourself.
    Number(String),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// The number, if this is an integer from 0 to `u64::MAX` written
    /// without fraction or exponent.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(text) => text.parse().ok(),
            _ => None,
        }
    }

    /// The number, if this is an integer that fits in an `i64`, written
    /// without fraction or exponent.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(text) => text.parse().ok(),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(value) => Some(*value),
            _ => None,
        }
    }
}

impl FlatObject {
    /// The value of the member `name`; `None` when there is no such member.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.members
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value)
    }

    /// The member `name` as a string; `None` when it is absent or not a
    /// string.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// The member `name` as a `u64` (see [`Value::as_u64`]); `None` when it
    /// is absent or not such a number.
    pub fn u64(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(Value::as_u64)
    }

    /// The member `name` as an `i64` (see [`Value::as_i64`]); `None` when it
    /// is absent or not such a number.
    pub fn i64(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Value::as_i64)
    }

    /// The member `name` as a boolean; `None` when it is absent or not a
    /// boolean.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(Value::as_bool)
    }

    /// Every member as `(name, value)`, in the order of the text.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.members
            .iter()
            .map(|(name, value)| (name.as_str(), value))
    }
}

/// Why [`parse_flat`] refused a text: what was wrong, and the byte offset
/// where it was noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The byte offset in the text.
    pub offset: usize,
    /// What was expected or wrong there.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for ParseError {}

impl From<ParseError> for crate::Error {
    /// [`Error::Invalid`](crate::Error::Invalid), with the parse error as
    /// its detail.
    fn from(error: ParseError) -> Self {
        crate::Error::Invalid(format!("not a flat JSON object: {error}"))
    }
}

/// Reads `text` as a flat JSON object: one object whose members' values are
/// strings, numbers, booleans or null, with whitespace around any token.
///
/// It refuses, with the offset of the trouble: anything that is not JSON;
/// a value that is an object or an array; a name that appears twice (so
/// that no two readers of one text can disagree on a member); anything but
/// whitespace after the object.
///
/// ```
/// use miniapp_sdk::json;
///
/// let paid = json::parse_flat(r#"{"out_trade_no":"shop-00000001","amount":2400}"#)?;
/// assert_eq!(paid.str("out_trade_no"), Some("shop-00000001"));
/// assert_eq!(paid.u64("amount"), Some(2400));
///
/// assert!(json::parse_flat(r#"{"items":[1,2]}"#).is_err());
/// assert!(json::parse_flat(r#"{"a":1,"a":2}"#).is_err());
/// # Ok::<(), json::ParseError>(())
/// ```
pub fn parse_flat(text: &str) -> Result<FlatObject, ParseError> {
    let mut reader = Reader {
        text,
        chars: text.chars(),
    };
    let object = reader.object()?;
    reader.skip_whitespace();
    if reader.peek().is_some() {
        return Err(reader.error("nothing after the object"));
    }
    Ok(object)
}

/// A cursor over the text being parsed.
struct Reader<'a> {
    text: &'a str,
    chars: Chars<'a>,
}

impl Reader<'_> {
    fn offset(&self) -> usize {
        self.text.len() - self.chars.as_str().len()
    }

    fn error(&self, message: &str) -> ParseError {
        ParseError {
            offset: self.offset(),
            message: message.to_owned(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.clone().next()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.chars.next();
        }
    }

    /// Consumes `expected`, after any whitespace.
    fn expect(&mut self, expected: char) -> Result<(), ParseError> {
        self.skip_whitespace();
        if self.peek() == Some(expected) {
            self.chars.next();
            Ok(())
        } else {
            Err(self.error(&format!("expected `{expected}`")))
        }
    }

    fn object(&mut self) -> Result<FlatObject, ParseError> {
        self.expect('{')?;
        let mut object = FlatObject::default();
        self.skip_whitespace();
        if self.peek() == Some('}') {
            self.chars.next();
            return Ok(object);
        }
        loop {
            self.skip_whitespace();
            let at = self.offset();
            if self.peek() != Some('"') {
                return Err(self.error("expected a member name"));
            }
            let name = self.string()?;
            if object.get(&name).is_some() {
                return Err(ParseError {
                    offset: at,
                    message: format!("the member {} appears twice", quote(&name)),
                });
            }
            self.expect(':')?;
            let value = self.value()?;
            object.members.push((name, value));
            self.skip_whitespace();
            match self.chars.next() {
                Some(',') => continue,
                Some('}') => return Ok(object),
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        self.skip_whitespace();
        match self.peek() {
            Some('"') => self.string().map(Value::String),
            Some('-' | '0'..='9') => self.number().map(Value::Number),
            Some('t') => self.literal("true", Value::Bool(true)),
            Some('f') => self.literal("false", Value::Bool(false)),
            Some('n') => self.literal("null", Value::Null),
            Some('{' | '[') => Err(self.error("a flat object holds no objects or arrays")),
            _ => Err(self.error("expected a value")),
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, ParseError> {
        if self.chars.as_str().starts_with(word) {
            self.chars = self.chars.as_str()[word.len()..].chars();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// A number as JSON writes it: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<String, ParseError> {
        let start = self.offset();
        if self.peek() == Some('-') {
            self.chars.next();
        }
        match self.peek() {
            Some('0') => {
                self.chars.next();
            }
            Some('1'..='9') => self.digits(),
            _ => return Err(self.error("expected a digit")),
        }
        if self.peek() == Some('.') {
            self.chars.next();
            self.one_or_more_digits()?;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.chars.next();
            if matches!(self.peek(), Some('+' | '-')) {
                self.chars.next();
            }
            self.one_or_more_digits()?;
        }
        Ok(self.text[start..self.offset()].to_owned())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some('0'..='9')) {
            self.chars.next();
        }
    }

    fn one_or_more_digits(&mut self) -> Result<(), ParseError> {
        if !matches!(self.peek(), Some('0'..='9')) {
            return Err(self.error("expected a digit"));
        }
        self.digits();
        Ok(())
    }

    /// A string, from its opening quote to its closing one, unescaped.
    fn string(&mut self) -> Result<String, ParseError> {
        self.chars.next(); // The opening quote.
        let mut text = String::new();
        loop {
            let at = self.offset();
            match self.chars.next() {
                None => return Err(self.error("the string does not end")),
                Some('"') => return Ok(text),
                Some('\\') => text.push(self.escape(at)?),
                Some(control) if control < ' ' => {
                    return Err(ParseError {
                        offset: at,
                        message: "a control character must be escaped in a string".into(),
                    });
                }
                Some(other) => text.push(other),
            }
        }
    }

    /// The character an escape stands for, the backslash (at `at`) read.
    fn escape(&mut self, at: usize) -> Result<char, ParseError> {
        let bad = |message: &str| ParseError {
            offset: at,
            message: message.to_owned(),
        };
        Ok(match self.chars.next() {
            Some('"') => '"',
            Some('\\') => '\\',
            Some('/') => '/',
            Some('b') => '\u{08}',
            Some('f') => '\u{0C}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let high = self.hex4().ok_or_else(|| bad("expected 4 hex digits"))?;
                match high {
                    0xD800..=0xDBFF => {
                        let low = match (self.chars.next(), self.chars.next()) {
                            (Some('\\'), Some('u')) => self.hex4(),
                            _ => None,
                        }
                        .filter(|low| (0xDC00..=0xDFFF).contains(low))
                        .ok_or_else(|| bad("a high surrogate without its low one"))?;
                        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                        char::from_u32(code).ok_or_else(|| bad("not a character"))?
                    }
                    0xDC00..=0xDFFF => return Err(bad("a low surrogate alone")),
                    _ => char::from_u32(high).ok_or_else(|| bad("not a character"))?,
                }
            }
            _ => return Err(bad("an unknown escape")),
        })
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut code = 0;
        for _ in 0..4 {
            code = code << 4 | self.chars.next()?.to_digit(16)?;
        }
        Some(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_what_json_requires() {
        assert_eq!(quote(r"back\slash"), r#""back\\slash""#);
        assert_eq!(quote("tab\there"), r#""tab\there""#);
        assert_eq!(quote("\u{1}\u{1f}"), r#""\u0001\u001f""#);
        assert_eq!(quote("Jörg ✓"), "\"Jörg ✓\"");
        // Escapes first, last, side by side and next to multi-byte characters;
        // DEL is not a control character to JSON.
        assert_eq!(
            quote("\"ö\\\n\r✓\u{8}\u{c}\u{7f}end\""),
            "\"\\\"ö\\\\\\n\\r✓\\b\\f\u{7f}end\\\"\""
        );
    }

    #[test]
    fn written_strings_read_back_unchanged() {
        let tricky = "\"ö\\\n\r✓\u{1}\u{8}\u{c}\t\u{1f} end \"";
        let body = Object::new().string(tricky, tricky).finish();
        let read = parse_flat(&body).unwrap();
        assert_eq!(read.str(tricky), Some(tricky));
    }

    #[test]
    fn an_empty_object_is_braces() {
        assert_eq!(Object::new().finish(), "{}");
    }

    #[test]
    fn numbers_keep_their_sign_and_non_finite_floats_are_null() {
        let body = Object::new()
            .number("a", -5i64)
            .number("b", u64::MAX)
            .number("c", 1.5)
            .number("d", f64::NAN)
            .finish();
        assert_eq!(
            body,
            r#"{"a":-5,"b":18446744073709551615,"c":1.5,"d":null}"#
        );
    }

    #[test]
    fn member_names_are_escaped() {
        assert_eq!(
            Object::new().boolean("a\"b", true).finish(),
            r#"{"a\"b":true}"#
        );
    }

    fn parse_error(text: &str) -> ParseError {
        parse_flat(text).expect_err(text)
    }

    #[test]
    fn a_flat_object_reads_every_kind_of_value_in_order() {
        let object =
            parse_flat(r#" { "s" : "x" , "n":-12, "f":1.5e-3, "t":true, "F":false, "z":null } "#)
                .unwrap();
        let members: Vec<(&str, &Value)> = object.iter().collect();
        assert_eq!(
            members,
            [
                ("s", &Value::String("x".into())),
                ("n", &Value::Number("-12".into())),
                ("f", &Value::Number("1.5e-3".into())),
                ("t", &Value::Bool(true)),
                ("F", &Value::Bool(false)),
                ("z", &Value::Null),
            ]
        );
        assert_eq!(object.i64("n"), Some(-12));
        assert_eq!(object.u64("n"), None);
        assert_eq!(object.u64("f"), None);
        assert_eq!(parse_flat("{}").unwrap(), FlatObject::default());
        assert_eq!(parse_flat(" {\n}\n").unwrap(), FlatObject::default());
    }

    #[test]
    fn integers_read_to_the_edges_of_their_types() {
        let object = parse_flat(r#"{"max":18446744073709551615,"over":18446744073709551616,"min":-9223372036854775808}"#).unwrap();
        assert_eq!(object.u64("max"), Some(u64::MAX));
        assert_eq!(object.u64("over"), None);
        assert_eq!(object.i64("min"), Some(i64::MIN));
    }

    #[test]
    fn what_the_writer_writes_the_reader_reads_back() {
        let nasty = "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} Jörg ✓ 🧧";
        let text = Object::new()
            .string(nasty, nasty)
            .number("amount", 1_000_000_000u64)
            .boolean("funded", true)
            .finish();
        let object = parse_flat(&text).unwrap();
        assert_eq!(object.str(nasty), Some(nasty));
        assert_eq!(object.u64("amount"), Some(1_000_000_000));
        assert_eq!(object.bool("funded"), Some(true));
    }

    #[test]
    fn escapes_decode_including_surrogate_pairs() {
        let object = parse_flat(r#"{"e":"\"\\\/\b\f\n\r\t\u00e9\u4e2d\ud83e\udde7"}"#).unwrap();
        assert_eq!(object.str("e"), Some("\"\\/\u{8}\u{c}\n\r\té中🧧"));
    }

    #[test]
    fn malformed_strings_are_refused() {
        for text in [
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u12g4"}"#,
            r#"{"a":"\ud83e"}"#,
            r#"{"a":"\ud83e\u0041"}"#,
            r#"{"a":"\udde7"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":"open"#,
        ] {
            parse_error(text);
        }
    }

    #[test]
    fn malformed_numbers_are_refused() {
        for text in [
            r#"{"a":01}"#,
            r#"{"a":-}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":+1}"#,
            r#"{"a":0x10}"#,
        ] {
            parse_error(text);
        }
    }

    #[test]
    fn what_is_not_one_flat_object_is_refused_with_its_offset() {
        assert_eq!(
            parse_error(r#"{"a":[1]}"#),
            ParseError {
                offset: 5,
                message: "a flat object holds no objects or arrays".into()
            }
        );
        assert_eq!(parse_error(r#"{"a":{}}"#).offset, 5);
        assert_eq!(parse_error(r#"{"a":1} x"#).offset, 8);
        let twice = parse_error(r#"{"a":1, "a":2}"#);
        assert_eq!(twice.offset, 8);
        assert_eq!(
            twice.to_string(),
            r#"the member "a" appears twice at byte 8"#
        );
        for text in [
            "",
            "[]",
            "\"a\"",
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a":1 "b":2}"#,
            r#"{a:1}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":True}"#,
        ] {
            parse_error(text);
        }
    }

    #[test]
    fn a_parse_error_is_an_invalid_error() {
        let error = crate::Error::from(parse_error("{"));
        assert_eq!(error.kind(), "invalid");
        assert!(
            error.detail().starts_with("not a flat JSON object: "),
            "{error}"
        );
    }
}
