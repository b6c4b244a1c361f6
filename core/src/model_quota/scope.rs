//! Which limits apply to a request and which state it counts in.
//!
//! - The **group** is the token group, else the user group; an empty name
//!   counts as absent ([`group`]).
//! - The **limits**: the group's override, else the model's, else the
//!   global ones ([`Scope::pick`]).
//! - The **state**: one per subject and model ([`write_key`]). The subject is
//!   the user (`u:<id>`), or under [`KeyBy::Group`] the group (`g:<name>`)
//!   when there is one. The limits' scope is not part of the key: switching
//!   groups keeps the count and holds it to the new limits.

use core::fmt;

/// Whose count a request uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum KeyBy {
    /// Each user has their own counts (per model); the group only picks the limits.
    #[default]
    User,
    /// Everyone in a group shares the group's counts (users without a group
    /// count alone).
    Group,
}

/// The group that picks the limits: the token group, else the user group.
pub fn group<'a>(token_group: Option<&'a str>, user_group: Option<&'a str>) -> Option<&'a str> {
    token_group
        .filter(|g| !g.is_empty())
        .or(user_group.filter(|g| !g.is_empty()))
}

/// Where a request's limits come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope<'a> {
    /// The group's override.
    Group(&'a str),
    /// The model's override.
    Model(&'a str),
    /// The global limits.
    Global,
}

impl<'a> Scope<'a> {
    /// Group over model over global: `has_group` / `has_model` say whether
    /// an override is configured.
    pub fn pick(
        group: Option<&'a str>,
        model: &'a str,
        has_group: impl Fn(&str) -> bool,
        has_model: impl Fn(&str) -> bool,
    ) -> Scope<'a> {
        match group {
            Some(g) if has_group(g) => Scope::Group(g),
            _ if has_model(model) => Scope::Model(model),
            _ => Scope::Global,
        }
    }
}

/// The subject a request counts under: `u:<user id>` or `g:<group>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subject<'a> {
    /// `u:` for a user, `g:` for a group (separate key spaces).
    pub prefix: &'static str,
    /// The user id or group name.
    pub name: &'a str,
}

impl<'a> Subject<'a> {
    /// The subject of a request by `user_id` in `group` (see [`group`]).
    pub fn of(key_by: KeyBy, user_id: &'a str, group: Option<&'a str>) -> Subject<'a> {
        match (key_by, group) {
            (KeyBy::Group, Some(g)) => Subject {
                prefix: "g:",
                name: g,
            },
            _ => Subject {
                prefix: "u:",
                name: user_id,
            },
        }
    }
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.prefix, self.name)
    }
}

/// Write the state's key for `subject` and `model`:
/// `<subject length>:<subject><model>`, length-prefixed so that no
/// (subject, model) pair spells another's key.
pub fn write_key(w: &mut impl fmt::Write, subject: Subject<'_>, model: &str) -> fmt::Result {
    let len = subject.prefix.len() + subject.name.len();
    write!(w, "{len}:{subject}{model}")
}
