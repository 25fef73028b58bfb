//! A route's transformations → [`Rewrite`] and [`HeaderEdits`]: `strip_prefix`,
//! `replace_prefix` and the `rewrite_path` template, and the `[route.request_headers]` /
//! `[route.response_headers]` tables with their `${variable}` value templates.
//!
//! Owns the rules that let the engine apply edits without checking anything under traffic:
//! every template variable is resolved to an index (a parameter of the route's pattern, a
//! claim of its JWT verifier), every literal is bytes the wire allows, no edit touches a
//! header that frames or routes the message, no request edit forges an identity header, and
//! no two renames depend on their order. Runs on the control side only.

use super::auth::cgi_name;
use super::{fail, is_identifier, is_token};
use crate::defaults::{HEADER_EDITS_MAX, HEADER_VALUE_TEMPLATE_BYTES_MAX, REQUEST_ID_HEADER};
use crate::locate::{Document, FieldPath, Target};
use crate::schema::{HeaderEditsConfig, RouteConfig};
use crate::{
    AuthRef, ConfigError, HeaderEdits, JwtAuth, PathKind, PathPattern, Rewrite, Segment,
    TemplatePart, Variable,
};

/// Headers no edit may touch, with the reason: the gateway frames each message itself
/// (RFC 9112 §6), removes hop-by-hop fields (RFC 9110 §7.6.1), routes by Host (§7.2) and
/// answers `Expect` itself (§10.1.1).
const UNEDITABLE_HEADERS: [(&str, &str); 9] = [
    (
        "host",
        "it names the target and selects the route (RFC 9110 §7.2)",
    ),
    ("content-length", "it frames the message (RFC 9112 §6.2)"),
    ("transfer-encoding", "it frames the message (RFC 9112 §6.1)"),
    ("connection", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("keep-alive", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("te", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("trailer", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("upgrade", "it is hop-by-hop (RFC 9110 §7.6.1)"),
    ("expect", "the gateway answers it itself (RFC 9110 §10.1.1)"),
];

/// What the variables of a route's templates can refer to.
pub(super) struct Context<'a> {
    /// The route's pattern: `{name}` and `${param.NAME}` resolve to its parameters.
    pub(super) path: &'a PathPattern,
    /// The route's authentication and every JWT verifier: `${claim.NAME}` resolves to an
    /// entry of the route's verifier's `claims_to_headers`.
    pub(super) auth: Option<AuthRef>,
    pub(super) jwt: &'a [JwtAuth],
    /// Lower-case identity headers, which request edits never set.
    pub(super) identity_headers: &'a [String],
    /// Whether the route has a request id for `${request_id}`.
    pub(super) request_id: bool,
}

/// Which message a header table edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Request,
    Response,
}

/// `strip_prefix`, `replace_prefix` and `rewrite_path` → [`Rewrite`]: at most one of them, the
/// first two with `path_prefix`, the last with `path`.
pub(super) fn check_rewrite(
    doc: &Document<'_>,
    at: &FieldPath,
    route: &RouteConfig,
    path: &PathPattern,
) -> Result<Rewrite, ConfigError> {
    let mut written: Vec<&str> = Vec::with_capacity(3);
    if route.strip_prefix {
        written.push("strip_prefix");
    }
    if route.replace_prefix.is_some() {
        written.push("replace_prefix");
    }
    if route.rewrite_path.is_some() {
        written.push("rewrite_path");
    }
    if written.len() > 1 {
        // Report the key written later: the one that was added to a working route.
        let position = |key: &str| {
            doc.span_of(&at.key(key), Target::Key)
                .map_or(0, |span| span.start)
        };
        written.sort_by_key(|key| position(key));
        let (first, second) = (written[0], written[1]);
        let hint = if written.contains(&"rewrite_path") {
            "keep one: rewrite_path builds the whole path of a `path` route, strip_prefix and \
             replace_prefix rewrite the prefix of a `path_prefix` route"
        } else {
            "keep one; replace_prefix = \"/\" strips the prefix too"
        };
        return fail(
            doc,
            &at.key(second),
            Target::Key,
            format!("{first} and {second} are both set"),
            hint,
        );
    }
    match (written.first().copied(), path.kind) {
        (None, _) => Ok(Rewrite::None),
        (Some("rewrite_path"), PathKind::Prefix) => fail(
            doc,
            &at.key("rewrite_path"),
            Target::Key,
            "rewrite_path needs path, but this route has path_prefix".to_owned(),
            "rewrite_path builds the upstream path from the parameters of an exact path such \
             as \"/v1/users/{id}\"; for a prefix route use strip_prefix or replace_prefix",
        ),
        (Some("rewrite_path"), PathKind::Exact) => {
            let template = route.rewrite_path.as_deref().unwrap_or_default();
            let parts = parse_path_template(doc, &at.key("rewrite_path"), template, path)?;
            Ok(Rewrite::Template(parts))
        }
        (Some(key), PathKind::Exact) => fail(
            doc,
            &at.key(key),
            Target::Key,
            format!("{key} needs path_prefix, but this route has path"),
            "prefix rewrites replace the part matched by path_prefix; use path_prefix, or \
             rewrite_path = \"/new/{param}\" to rebuild an exact path",
        ),
        (Some("strip_prefix"), PathKind::Prefix) => Ok(Rewrite::StripPrefix),
        (Some(_), PathKind::Prefix) => {
            let replacement = route.replace_prefix.as_deref().unwrap_or_default();
            let replace_at = at.key("replace_prefix");
            if !replacement.starts_with('/') {
                return fail(
                    doc,
                    &replace_at,
                    Target::Value,
                    format!("replace_prefix {replacement:?} does not start with `/`"),
                    &format!("write \"/{replacement}\""),
                );
            }
            super::check_path_chars(doc, &replace_at, "replace_prefix", replacement)?;
            let trimmed = replacement.trim_end_matches('/');
            let replacement = if trimmed.is_empty() { "/" } else { trimmed };
            Ok(Rewrite::ReplacePrefix(replacement.to_owned()))
        }
    }
}

/// `rewrite_path` → parts: literals and `{name}` parameters of the route's exact pattern.
fn parse_path_template(
    doc: &Document<'_>,
    at: &FieldPath,
    template: &str,
    path: &PathPattern,
) -> Result<Vec<TemplatePart>, ConfigError> {
    let bad = |message: String, hint: &str| fail(doc, at, Target::Value, message, hint);
    if !template.starts_with('/') {
        return bad(
            format!("rewrite_path {template:?} does not start with `/`"),
            &format!("write \"/{template}\""),
        );
    }
    // The result goes on the wire as the request target's path (RFC 9112 §3.2): visible
    // ASCII, and the query stays the client's.
    if let Some(c) = template
        .chars()
        .find(|&c| !c.is_ascii_graphic() || c == '?' || c == '#')
    {
        let hint = match c {
            '?' => "the query is forwarded as received; rewrite_path sets the path only",
            '#' => "a fragment is never sent to a server",
            _ => "percent-encode the character, e.g. a space as %20 and é as %C3%A9",
        };
        return bad(format!("rewrite_path {template:?} contains {c:?}"), hint);
    }
    if template.contains("//") {
        return bad(
            format!("rewrite_path {template:?} has an empty segment (`//`)"),
            "remove the doubled `/`",
        );
    }
    split_param_template(
        template,
        path,
        &ParamTemplate {
            field: "rewrite_path",
            example: "/users/{id}",
            pattern: "path",
        },
    )
    .or_else(|(message, hint)| bad(message, &hint))
}

/// How [`split_param_template`] names the field in its messages.
pub(super) struct ParamTemplate<'a> {
    /// The field, e.g. `rewrite_path`.
    pub field: &'a str,
    /// An example of a parameter in it.
    pub example: &'a str,
    /// What the parameters belong to, e.g. `path`.
    pub pattern: &'a str,
}

/// Splits a request-target template into literals and `{name}` parameters of the route's
/// `path` pattern. Errors are (message, hint).
pub(super) fn split_param_template(
    template: &str,
    path: &PathPattern,
    names: &ParamTemplate<'_>,
) -> Result<Vec<TemplatePart>, (String, String)> {
    let ParamTemplate {
        field,
        example,
        pattern,
    } = names;
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(brace) = rest.find(['{', '}']) {
        push_literal(&mut parts, &rest[..brace]);
        let after = &rest[brace..];
        let name = after
            .strip_prefix('{')
            .and_then(|inner| inner.split_once('}'))
            .map(|(name, _)| name)
            .filter(|name| !name.is_empty() && !name.contains(['{', '/', '?']));
        let Some(name) = name else {
            return Err((
                format!(
                    "{field} {template:?} has a `{}` that is not part of a {{name}}",
                    &after[..1]
                ),
                format!(
                    "a parameter is written {{name}}, e.g. {example}; a literal brace is \
                     percent-encoded as %7B or %7D"
                ),
            ));
        };
        let Some(index) = param_index(path, name) else {
            return Err((
                format!("{field} {template:?}: {{{name}}} is not a parameter of {pattern}"),
                params_hint(path),
            ));
        };
        parts.push(TemplatePart::Var(Variable::Param(index)));
        rest = &after[name.len() + 2..];
    }
    push_literal(&mut parts, rest);
    Ok(parts)
}

/// The index of parameter `name` among the pattern's `{param}` segments, in order.
pub(super) fn param_index(path: &PathPattern, name: &str) -> Option<usize> {
    path.segments
        .iter()
        .filter_map(|segment| match segment {
            Segment::Param(param) => Some(param.as_str()),
            Segment::Literal(_) => None,
        })
        .position(|param| param == name)
}

/// What the route's parameters are, for an unknown one.
pub(super) fn params_hint(path: &PathPattern) -> String {
    let params: Vec<&str> = path
        .segments
        .iter()
        .filter_map(|segment| match segment {
            Segment::Param(param) => Some(param.as_str()),
            Segment::Literal(_) => None,
        })
        .collect();
    match path.kind {
        PathKind::Prefix => "a path_prefix route has no parameters; match with path = \
                             \"/users/{id}\" to capture one"
            .to_owned(),
        PathKind::Exact if params.is_empty() => "this route's path has no {param} segments; \
                                                 add one, e.g. path = \"/users/{id}\""
            .to_owned(),
        PathKind::Exact => format!("parameters of this route's path: {}", params.join(", ")),
    }
}

/// Appends literal text, merged into a literal just before it; empty text is not stored.
pub(super) fn push_literal(parts: &mut Vec<TemplatePart>, text: &str) {
    if text.is_empty() {
        return;
    }
    match parts.last_mut() {
        Some(TemplatePart::Literal(literal)) => literal.push_str(text),
        _ => parts.push(TemplatePart::Literal(text.to_owned())),
    }
}

/// A `[route.request_headers]` or `[route.response_headers]` table at `at` → [`HeaderEdits`].
pub(super) fn check_header_edits(
    doc: &Document<'_>,
    at: &FieldPath,
    config: &HeaderEditsConfig,
    side: Side,
    context: &Context<'_>,
) -> Result<HeaderEdits, ConfigError> {
    let count = config.remove.len() + config.rename.len() + config.set.len() + config.add.len();
    if count > HEADER_EDITS_MAX {
        return fail(
            doc,
            at,
            Target::Value,
            format!("{count} header edits, more than {HEADER_EDITS_MAX}"),
            "each edit is work on every request of the route; keep the ones the upstream or \
             client needs",
        );
    }

    let remove_at = at.key("remove");
    let mut remove: Vec<String> = Vec::with_capacity(config.remove.len());
    for (j, name) in config.remove.iter().enumerate() {
        let name_at = remove_at.index(j);
        let lower = check_edit_name(doc, &name_at, Target::Value, name)?;
        check_not_request_id(doc, &name_at, Target::Value, name, &lower, context)?;
        if remove.contains(&lower) {
            return listed_twice(doc, &name_at, Target::Value, name, "remove");
        }
        remove.push(lower);
    }

    let rename_at = at.key("rename");
    let mut rename: Vec<(String, String)> = Vec::with_capacity(config.rename.len());
    for (from, to) in &config.rename {
        let entry_at = rename_at.key(from);
        let from_lower = check_edit_name(doc, &entry_at, Target::Key, from)?;
        check_not_request_id(doc, &entry_at, Target::Key, from, &from_lower, context)?;
        if rename.iter().any(|(f, _)| *f == from_lower) {
            return listed_twice(doc, &entry_at, Target::Key, from, "rename");
        }
        if remove.contains(&from_lower) {
            return fail(
                doc,
                &entry_at,
                Target::Key,
                format!("{from} is removed, so renaming it does nothing"),
                "removals come first; keep either the removal or the rename",
            );
        }
        let to_lower = check_edit_name(doc, &entry_at, Target::Value, to)?;
        check_not_request_id(doc, &entry_at, Target::Value, to, &to_lower, context)?;
        if side == Side::Request {
            check_not_identity(doc, &entry_at, to, &to_lower, "rename to", context)?;
        }
        if let Some((other, _)) = rename.iter().find(|(_, t)| t.eq_ignore_ascii_case(to)) {
            return fail(
                doc,
                &entry_at,
                Target::Value,
                format!("{other} and {from} are both renamed to {to}"),
                "rename one header to each name; the upstream would see two fields of one name",
            );
        }
        rename.push((from_lower, to.clone()));
    }
    // A name both renamed and renamed to would give a result that depends on the order the
    // renames run in (a → b, b → c).
    for (from, to) in &rename {
        if rename
            .iter()
            .any(|(f, _)| f.eq_ignore_ascii_case(to) && f != from)
        {
            return fail(
                doc,
                &rename_at.key(written_rename(config, from)),
                Target::Value,
                format!("{from} is renamed to {to}, which is renamed too"),
                "renames do not chain; rename each header straight to its final name",
            );
        }
    }

    let set = check_values(doc, &at.key("set"), &config.set, "set", side, context)?;
    let add = check_values(doc, &at.key("add"), &config.add, "add", side, context)?;
    Ok(HeaderEdits {
        remove,
        rename,
        set,
        add,
    })
}

/// The `rename` key as written whose lower-case form is `lower`.
fn written_rename<'c>(config: &'c HeaderEditsConfig, lower: &str) -> &'c str {
    config
        .rename
        .keys()
        .find(|from| from.eq_ignore_ascii_case(lower))
        .map_or("", String::as_str)
}

/// `set` or `add`: names checked, values parsed as templates.
fn check_values(
    doc: &Document<'_>,
    at: &FieldPath,
    values: &std::collections::BTreeMap<String, String>,
    key: &str,
    side: Side,
    context: &Context<'_>,
) -> Result<Vec<(String, Vec<TemplatePart>)>, ConfigError> {
    let mut checked: Vec<(String, Vec<TemplatePart>)> = Vec::with_capacity(values.len());
    for (name, value) in values {
        let entry_at = at.key(name);
        let lower = check_edit_name(doc, &entry_at, Target::Key, name)?;
        check_not_request_id(doc, &entry_at, Target::Key, name, &lower, context)?;
        if checked.iter().any(|(n, _)| n.eq_ignore_ascii_case(&lower)) {
            return listed_twice(doc, &entry_at, Target::Key, name, key);
        }
        if side == Side::Request {
            check_not_identity(doc, &entry_at, name, &lower, key, context)?;
        }
        let template = parse_value_template(doc, &entry_at, name, value, context)?;
        checked.push((name.clone(), template));
    }
    Ok(checked)
}

fn listed_twice<T>(
    doc: &Document<'_>,
    at: &FieldPath,
    target: Target,
    name: &str,
    key: &str,
) -> Result<T, ConfigError> {
    fail(
        doc,
        at,
        target,
        format!("header {name} is listed twice in {key} (names are case-insensitive)"),
        "list each header once",
    )
}

/// An edited header name: a token (RFC 9110 §5.1) that is not framing, hop-by-hop or routing.
/// Returns it lower-case.
fn check_edit_name(
    doc: &Document<'_>,
    at: &FieldPath,
    target: Target,
    name: &str,
) -> Result<String, ConfigError> {
    if !is_token(name) {
        return fail(
            doc,
            at,
            target,
            format!("{name:?} is not a valid header name"),
            "header names use letters, digits and !#$%&'*+-.^_`|~, e.g. \"X-Env\"",
        );
    }
    let lower = name.to_ascii_lowercase();
    if let Some((_, reason)) = UNEDITABLE_HEADERS.iter().find(|(h, _)| *h == lower) {
        return fail(
            doc,
            at,
            target,
            format!("{name} cannot be edited: {reason}"),
            "the gateway manages framing, connection and routing headers itself; edit headers \
             of your own, e.g. \"X-Env\"",
        );
    }
    Ok(lower)
}

/// With `request_id = true` the gateway owns `X-Request-Id` both ways: it passes the client's
/// (or a generated) id upstream and returns it, so an edit of it would be undone or doubled.
fn check_not_request_id(
    doc: &Document<'_>,
    at: &FieldPath,
    target: Target,
    name: &str,
    lower: &str,
    context: &Context<'_>,
) -> Result<(), ConfigError> {
    if !context.request_id || !lower.eq_ignore_ascii_case(REQUEST_ID_HEADER) {
        return Ok(());
    }
    fail(
        doc,
        at,
        target,
        format!("{name} is the gateway's with request_id = true"),
        "the gateway passes the client's (or a generated) X-Request-Id upstream and returns \
         it; to copy the id into another header use ${request_id}, or set request_id = false \
         to edit X-Request-Id yourself",
    )
}

/// Request edits never write an identity header: the gateway removes every client copy and
/// sets it from the verified identity, so a configured value would forge one.
fn check_not_identity(
    doc: &Document<'_>,
    at: &FieldPath,
    name: &str,
    lower: &str,
    key: &str,
    context: &Context<'_>,
) -> Result<(), ConfigError> {
    // Compared as CGI-style upstreams read names: `X_User_Id` would forge `X-User-Id`.
    if !context
        .identity_headers
        .iter()
        .any(|h| cgi_name(h) == cgi_name(lower))
    {
        return Ok(());
    }
    let target = if key == "rename to" {
        Target::Value
    } else {
        Target::Key
    };
    fail(
        doc,
        at,
        target,
        format!("request_headers cannot {key} {name}: it is an identity header"),
        "the gateway removes any client-sent copy and sets it from the verified identity \
         (claims_to_headers, consumer_header); to pass a claim in another header use \
         ${claim.NAME}",
    )
}

/// A header value template → parts: literal text (header-value bytes) and resolved variables.
fn parse_value_template(
    doc: &Document<'_>,
    at: &FieldPath,
    header: &str,
    value: &str,
    context: &Context<'_>,
) -> Result<Vec<TemplatePart>, ConfigError> {
    let bad = |message: String, hint: &str| fail(doc, at, Target::Value, message, hint);
    let variables = "variables: ${client_ip}, ${route}, ${request_id}, ${param.NAME}, \
                     ${claim.NAME}; $$ is a literal $";
    if value.len() > HEADER_VALUE_TEMPLATE_BYTES_MAX {
        return bad(
            format!(
                "the value of {header} is {} bytes, more than {HEADER_VALUE_TEMPLATE_BYTES_MAX}",
                value.len()
            ),
            "a header value is one line that every request carries; keep it short",
        );
    }
    // RFC 9110 §5.5: a field value is visible characters, spaces and tabs; CR, LF and NUL
    // would split or end the header. obs-text is not written by the gateway.
    if let Some(c) = value
        .chars()
        .find(|&c| !(c == ' ' || c == '\t' || c.is_ascii_graphic()))
    {
        return bad(
            format!("the value of {header} contains {c:?}, which a header value cannot"),
            "a header value is visible ASCII, spaces and tabs, on one line",
        );
    }
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return bad(
            format!("the value of {header} starts or ends with whitespace"),
            "remove it: HTTP strips whitespace around header values (RFC 9110 §5.5)",
        );
    }
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        push_literal(&mut parts, &rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            push_literal(&mut parts, "$");
            rest = tail;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            return bad(
                format!("the value of {header} has a `$` that starts no ${{name}}"),
                &format!("write ${{name}} for a variable, $$ for a literal $; {variables}"),
            );
        };
        let Some((name, tail)) = inner.split_once('}') else {
            return bad(
                format!("the value of {header} has an unclosed `${{`"),
                &format!("close it: ${{name}}; {variables}"),
            );
        };
        let variable = resolve_variable(doc, at, header, name, context, variables)?;
        parts.push(TemplatePart::Var(variable));
        rest = tail;
    }
    push_literal(&mut parts, rest);
    Ok(parts)
}

/// `client_ip`, `route`, `request_id`, `param.NAME` or `claim.NAME` → a [`Variable`].
fn resolve_variable(
    doc: &Document<'_>,
    at: &FieldPath,
    header: &str,
    name: &str,
    context: &Context<'_>,
    variables: &str,
) -> Result<Variable, ConfigError> {
    let bad = |message: String, hint: &str| fail(doc, at, Target::Value, message, hint);
    match name {
        "client_ip" => return Ok(Variable::ClientIp),
        "route" => return Ok(Variable::Route),
        "request_id" if context.request_id => return Ok(Variable::RequestId),
        "request_id" => {
            return bad(
                format!("the value of {header} uses ${{request_id}}, but request_id = false"),
                "the route has no request id with request_id = false; remove the variable, or \
                 the request_id = false line",
            )
        }
        "" => {
            return bad(
                format!("the value of {header} has an empty ${{}}"),
                &format!("name a variable; {variables}"),
            )
        }
        _ => {}
    }
    if let Some(param) = name.strip_prefix("param.") {
        if !is_identifier(param) {
            return bad(
                format!("the value of {header}: ${{{name}}} names no parameter"),
                "write ${param.NAME} with NAME a {NAME} segment of the route's path",
            );
        }
        return match param_index(context.path, param) {
            Some(index) => Ok(Variable::Param(index)),
            None => bad(
                format!(
                    "the value of {header}: {{{param}}} is not a parameter of the route's path"
                ),
                &params_hint(context.path),
            ),
        };
    }
    if let Some(claim) = name.strip_prefix("claim.") {
        if claim.is_empty() {
            return bad(
                format!("the value of {header}: ${{{name}}} names no claim"),
                "write ${claim.NAME} with NAME a claim of the route's JWT verifier, e.g. \
                 ${claim.sub}",
            );
        }
        return resolve_claim(doc, at, header, claim, context);
    }
    bad(
        format!("the value of {header} uses the unknown variable ${{{name}}}"),
        variables,
    )
}

/// `${claim.NAME}`: the index of NAME in the route's JWT verifier's `claims_to_headers`, the
/// claims the engine takes out of a verified token.
fn resolve_claim(
    doc: &Document<'_>,
    at: &FieldPath,
    header: &str,
    claim: &str,
    context: &Context<'_>,
) -> Result<Variable, ConfigError> {
    let bad = |message: String, hint: &str| fail(doc, at, Target::Value, message, hint);
    let jwt = match context.auth {
        Some(AuthRef::Jwt(i)) => context.jwt.get(i),
        Some(AuthRef::ApiKey(_)) => {
            return bad(
                format!(
                    "the value of {header} uses ${{claim.{claim}}}, but the route's auth is an \
                     API-key set"
                ),
                "claims come from a verified JWT: set auth to an [auth.jwt.NAME] whose \
                 claims_to_headers maps the claim",
            )
        }
        None => None,
    };
    let Some(jwt) = jwt else {
        return bad(
            format!("the value of {header} uses ${{claim.{claim}}}, but the route has no auth"),
            &format!(
                "add auth = \"NAME\" naming an [auth.jwt.NAME] whose claims_to_headers maps \
                 {claim}"
            ),
        );
    };
    if let Some(index) = jwt.claims_to_headers.iter().position(|(c, _)| c == claim) {
        return Ok(Variable::Claim(index));
    }
    let mapped: Vec<&str> = jwt
        .claims_to_headers
        .iter()
        .map(|(c, _)| c.as_str())
        .collect();
    let hint = if mapped.is_empty() {
        format!(
            "[auth.jwt.{}] maps no claims; add claims_to_headers = {{ {claim} = \"X-Header\" }}",
            jwt.name
        )
    } else {
        format!(
            "claims mapped by [auth.jwt.{}]: {}; add {claim} to its claims_to_headers",
            jwt.name,
            mapped.join(", ")
        )
    };
    bad(
        format!(
            "the value of {header} uses claim {claim}, which [auth.jwt.{}] does not map in \
             claims_to_headers",
            jwt.name
        ),
        &hint,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_merge_and_empty_ones_are_not_stored() {
        let mut parts = Vec::new();
        push_literal(&mut parts, "");
        assert!(parts.is_empty());
        push_literal(&mut parts, "/a");
        push_literal(&mut parts, "$");
        parts.push(TemplatePart::Var(Variable::Route));
        push_literal(&mut parts, "");
        push_literal(&mut parts, "b");
        assert_eq!(
            parts,
            [
                TemplatePart::Literal("/a$".to_owned()),
                TemplatePart::Var(Variable::Route),
                TemplatePart::Literal("b".to_owned()),
            ]
        );
    }

    #[test]
    fn parameters_are_indexed_among_parameters_only() {
        let path = PathPattern {
            kind: PathKind::Exact,
            segments: vec![
                Segment::Literal("v1".to_owned()),
                Segment::Param("org".to_owned()),
                Segment::Literal("users".to_owned()),
                Segment::Param("id".to_owned()),
            ],
        };
        assert_eq!(param_index(&path, "org"), Some(0));
        assert_eq!(param_index(&path, "id"), Some(1));
        assert_eq!(param_index(&path, "users"), None);
        assert_eq!(
            params_hint(&path),
            "parameters of this route's path: org, id"
        );
    }
}
