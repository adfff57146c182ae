//! Writing small JSON documents by hand, with correct string escaping.
//!
//! Enough for a program that answers with a flat object and wants no
//! serializer in its binary; reach for `serde_json` for anything nested.

use std::fmt::{self, Write};

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
        Self {
            text: String::from("{"),
        }
    }

    /// Adds a string member, escaped.
    pub fn string(self, name: &str, value: &str) -> Self {
        let value = quote(value);
        self.raw(name, &value)
    }

    /// Adds a number member: any integer or float type (a float that is not
    /// finite has no JSON form and is written as `null`).
    pub fn number(self, name: &str, value: impl Into<Number>) -> Self {
        let value = value.into().to_string();
        self.raw(name, &value)
    }

    /// Adds a boolean member.
    pub fn boolean(self, name: &str, value: bool) -> Self {
        self.raw(name, if value { "true" } else { "false" })
    }

    /// Adds a member whose value is `json`, written as given: the caller
    /// vouches that it is valid JSON (a nested object's `finish()`, say).
    pub fn raw(mut self, name: &str, json: &str) -> Self {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        write_quoted(&mut self.text, name);
        self.text.push(':');
        self.text.push_str(json);
        self
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

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            NumberRepr::Signed(value) => write!(f, "{value}"),
            NumberRepr::Unsigned(value) => write!(f, "{value}"),
            NumberRepr::Float(value) if value.is_finite() => write!(f, "{value}"),
            NumberRepr::Float(_) => f.write_str("null"),
        }
    }
}

/// `text` as a JSON string literal, quotes included.
///
/// ```
/// assert_eq!(miniapp_sdk::json::quote("a\"b\n"), r#""a\"b\n""#);
/// ```
pub fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    write_quoted(&mut quoted, text);
    quoted
}

fn write_quoted(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            control if control < ' ' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", control as u32);
            }
            other => out.push(other),
        }
    }
    out.push('"');
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
}
