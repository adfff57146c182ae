//! Dispatch of requests to handlers by method and path.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::request::{Request, percent_decode};
use crate::response::Response;

/// A function that answers the requests of one route.
///
/// Closures that capture nothing coerce to this type, so a route can be
/// written inline: `router.get("/", |_, _| Response::text(200, "hi"))`.
pub type Handler = fn(&Request, &Params) -> Response;

/// Routes requests to handlers by method and path.
///
/// A pattern is a path whose segments are either literal (`/orders`) or a
/// named parameter (`/orders/:id`), which matches any one non-empty segment;
/// the handler reads it from [`Params`], percent-decoded. Paths match
/// exactly: `/orders/` is not `/orders`.
///
/// When several patterns match a path, the most specific wins: the one whose
/// first literal segment comes earliest, so `/users/me` is preferred to
/// `/users/:id` whatever the order of registration.
///
/// A path that no route matches gets `404 Not Found`, or the program's own
/// answer given to [`Router::fallback`]; a path that routes match only under
/// other methods gets `405 Method Not Allowed` with an `allow` header.
///
/// ```
/// use miniapp_sdk::{Request, Response, Router};
///
/// let router = Router::new()
///     .get("/orders/:id", |_, params| Response::text(200, params.get("id").unwrap_or("")))
///     .post("/orders", |_, _| Response::new(201));
///
/// assert_eq!(router.handle(&Request::new("GET", "/orders/7")).body, b"7");
/// assert_eq!(router.handle(&Request::new("GET", "/orders")).status, 405);
/// assert_eq!(router.handle(&Request::new("GET", "/nowhere")).status, 404);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
    fallback: Option<Handler>,
}

#[derive(Debug, Clone)]
struct Route {
    /// In upper case.
    method: Cow<'static, str>,
    /// The pattern after its leading `/`: segments separated by `/`, a
    /// parameter's starting with `:`. Kept as text and split when matched,
    /// which costs a program less than building the route's parts, as every
    /// call builds its router afresh.
    pattern: String,
    handler: Handler,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Literal(&'a str),
    Param(&'a str),
}

impl Router {
    /// A router with no routes: it answers every request with 404.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route for `method` (compared in upper case) and `pattern`.
    ///
    /// # Panics
    ///
    /// If `pattern` does not start with `/`, has a parameter with no name
    /// (`/:`), or has the same shape as a route already added for `method`
    /// (`/a/:x` and `/a/:y` have the same shape): these are mistakes in the
    /// program, not in a request.
    pub fn route(self, method: &str, pattern: &str, handler: Handler) -> Self {
        self.add(Cow::Owned(method.to_ascii_uppercase()), pattern, handler)
    }

    /// Adds a `GET` route; see [`Router::route`].
    pub fn get(self, pattern: &str, handler: Handler) -> Self {
        self.add(Cow::Borrowed("GET"), pattern, handler)
    }

    /// Adds a `POST` route; see [`Router::route`].
    pub fn post(self, pattern: &str, handler: Handler) -> Self {
        self.add(Cow::Borrowed("POST"), pattern, handler)
    }

    /// Adds a `PUT` route; see [`Router::route`].
    pub fn put(self, pattern: &str, handler: Handler) -> Self {
        self.add(Cow::Borrowed("PUT"), pattern, handler)
    }

    /// Adds a `PATCH` route; see [`Router::route`].
    pub fn patch(self, pattern: &str, handler: Handler) -> Self {
        self.add(Cow::Borrowed("PATCH"), pattern, handler)
    }

    /// Adds a `DELETE` route; see [`Router::route`].
    pub fn delete(self, pattern: &str, handler: Handler) -> Self {
        self.add(Cow::Borrowed("DELETE"), pattern, handler)
    }

    /// Answers the requests whose path no route matches, under any method,
    /// with `handler` instead of `404 Not Found`; its [`Params`] are empty.
    /// A path that routes match under other methods still gets `405`.
    pub fn fallback(mut self, handler: Handler) -> Self {
        self.fallback = Some(handler);
        self
    }

    fn add(mut self, method: Cow<'static, str>, pattern: &str, handler: Handler) -> Self {
        let rest = pattern
            .strip_prefix('/')
            .unwrap_or_else(|| panic!("route pattern {pattern:?} must start with `/`"));
        assert!(
            !segments(rest).any(|segment| segment == Segment::Param("")),
            "route pattern {pattern:?} has a parameter with no name"
        );
        let duplicate = self
            .routes
            .iter()
            .any(|route| route.method == method && same_shape(&route.pattern, rest));
        assert!(
            !duplicate,
            "a route for {method} with the shape of {pattern} already exists"
        );
        self.routes.push(Route {
            method,
            pattern: rest.to_owned(),
            handler,
        });
        self
    }

    /// Answers `request` with the handler of the best matching route, or with
    /// the fallback, 404 or 405 when there is none.
    pub fn handle(&self, request: &Request) -> Response {
        let Some(path) = request.path.strip_prefix('/') else {
            return self.unrouted(request);
        };
        let matching = || {
            self.routes
                .iter()
                .filter(move |route| matches(&route.pattern, path))
        };
        // One pass finds the best route for the method, and whether the path
        // is routed under other methods; only a 405 walks the routes again,
        // to list those methods.
        let mut best: Option<&Route> = None;
        let mut routed_elsewhere = false;
        for route in matching() {
            if route.method != request.method {
                routed_elsewhere = true;
            } else if best.is_none_or(|best| specificity(&route.pattern, &best.pattern).is_ge()) {
                best = Some(route);
            }
        }
        if let Some(route) = best {
            let params = Params::capture(&route.pattern, path);
            return (route.handler)(request, &params);
        }
        if !routed_elsewhere {
            return self.unrouted(request);
        }
        let mut allowed: Vec<&str> = matching().map(|route| route.method.as_ref()).collect();
        allowed.sort_unstable();
        allowed.dedup();
        Response::method_not_allowed(&allowed)
    }

    /// The answer to a request whose path no route matches.
    fn unrouted(&self, request: &Request) -> Response {
        match self.fallback {
            Some(handler) => handler(request, &Params::default()),
            None => Response::not_found(),
        }
    }
}

/// The values of a matched route's `:param` segments, percent-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    values: Vec<(String, String)>,
}

impl Params {
    fn capture(pattern: &str, path: &str) -> Self {
        let values = segments(pattern)
            .zip(path.split('/'))
            .filter_map(|(segment, value)| match segment {
                Segment::Param(name) => Some((name.to_owned(), percent_decode(value).into_owned())),
                Segment::Literal(_) => None,
            })
            .collect();
        Self { values }
    }

    /// The value of the parameter `name`, or `None` when the route has no
    /// such parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every parameter as `(name, value)`, in the order of the pattern.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

/// The segments of a pattern without its leading `/`.
fn segments(pattern: &str) -> impl Iterator<Item = Segment<'_>> {
    pattern
        .split('/')
        .map(|segment| match segment.strip_prefix(':') {
            Some(name) => Segment::Param(name),
            None => Segment::Literal(segment),
        })
}

/// Whether `pattern` matches `path`, both without their leading `/`.
fn matches(pattern: &str, path: &str) -> bool {
    let mut values = path.split('/');
    segments(pattern).all(|segment| match (segment, values.next()) {
        (_, None) => false,
        (Segment::Literal(literal), Some(value)) => literal == value,
        (Segment::Param(_), Some(value)) => !value.is_empty(),
    }) && values.next().is_none()
}

/// Orders two patterns that match the same path: the one whose first
/// literal segment comes earlier, where the other has a parameter, is the
/// more specific.
fn specificity(left: &str, right: &str) -> Ordering {
    literals(left).cmp(literals(right))
}

/// For each segment of `pattern`, whether it is a literal.
fn literals(pattern: &str) -> impl Iterator<Item = bool> + '_ {
    segments(pattern).map(|segment| matches!(segment, Segment::Literal(_)))
}

fn same_shape(left: &str, right: &str) -> bool {
    let (mut left, mut right) = (segments(left), segments(right));
    loop {
        match (left.next(), right.next()) {
            (None, None) => return true,
            (Some(Segment::Literal(a)), Some(Segment::Literal(b))) if a == b => {}
            (Some(Segment::Param(_)), Some(Segment::Param(_))) => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_route(request: &Request, params: &Params) -> Response {
        let params: Vec<String> = params
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        Response::text(200, format!("{} {}", request.method, params.join(",")))
    }

    fn named(name: &'static str) -> Handler {
        match name {
            "me" => |_, _| Response::text(200, "me"),
            "id" => |_, params| Response::text(200, format!("id {}", params.get("id").unwrap())),
            _ => unreachable!(),
        }
    }

    fn body(router: &Router, method: &str, target: &str) -> (u16, String) {
        let response = router.handle(&Request::new(method, target));
        (response.status, response.body_text().unwrap().to_owned())
    }

    #[test]
    fn exact_paths_match_exactly() {
        let router = Router::new()
            .get("/", echo_route)
            .get("/orders", echo_route);
        assert_eq!(body(&router, "GET", "/").0, 200);
        assert_eq!(body(&router, "GET", "/orders").0, 200);
        assert_eq!(body(&router, "GET", "/orders/").0, 404);
        assert_eq!(body(&router, "GET", "/order").0, 404);
        assert_eq!(body(&router, "GET", "/orders/7").0, 404);
    }

    #[test]
    fn params_capture_one_decoded_segment() {
        let router = Router::new().get("/users/:user/orders/:order", echo_route);
        assert_eq!(
            body(&router, "GET", "/users/J%C3%B6rg/orders/7"),
            (200, "GET user=Jörg,order=7".to_owned())
        );
        assert_eq!(body(&router, "GET", "/users//orders/7").0, 404);
        assert_eq!(body(&router, "GET", "/users/a/orders").0, 404);
    }

    #[test]
    fn the_query_does_not_take_part_in_routing() {
        let router = Router::new().get("/search", echo_route);
        assert_eq!(body(&router, "GET", "/search?q=tea").0, 200);
    }

    #[test]
    fn routes_are_per_method() {
        let router = Router::new()
            .get("/items", |_, _| Response::text(200, "list"))
            .post("/items", |_, _| Response::text(201, "made"));
        assert_eq!(body(&router, "GET", "/items"), (200, "list".to_owned()));
        assert_eq!(body(&router, "POST", "/items"), (201, "made".to_owned()));
    }

    #[test]
    fn a_path_known_under_other_methods_is_405_with_allow() {
        let router = Router::new()
            .post("/items/:id", echo_route)
            .delete("/items/:id", echo_route)
            .put("/items/:id", echo_route);
        let response = router.handle(&Request::new("GET", "/items/3"));
        assert_eq!(response.status, 405);
        assert_eq!(response.header("allow"), Some("DELETE, POST, PUT"));
    }

    #[test]
    fn an_unknown_path_is_404() {
        let router = Router::new().get("/items", echo_route);
        assert_eq!(body(&router, "POST", "/nothing").0, 404);
        assert_eq!(Router::new().handle(&Request::new("GET", "/")).status, 404);
    }

    #[test]
    fn the_fallback_answers_unrouted_paths_but_not_other_methods() {
        let router = Router::new()
            .get("/items/:id", echo_route)
            .fallback(|request, params| {
                assert_eq!(params.iter().count(), 0);
                Response::text(200, format!("fallback {}", request.path))
            });
        assert_eq!(
            body(&router, "GET", "/items/7"),
            (200, "GET id=7".to_owned())
        );
        assert_eq!(
            body(&router, "GET", "/other"),
            (200, "fallback /other".to_owned())
        );
        assert_eq!(body(&router, "GET", ""), (200, "fallback ".to_owned()));
        assert_eq!(body(&router, "POST", "/items/7").0, 405);
    }

    #[test]
    fn a_path_without_a_leading_slash_is_404() {
        let router = Router::new().get("/", echo_route);
        assert_eq!(body(&router, "GET", "").0, 404);
    }

    #[test]
    fn the_most_specific_route_wins_whatever_the_order() {
        let literal_last = Router::new()
            .get("/users/:id", named("id"))
            .get("/users/me", named("me"));
        let literal_first = Router::new()
            .get("/users/me", named("me"))
            .get("/users/:id", named("id"));
        for router in [literal_last, literal_first] {
            assert_eq!(body(&router, "GET", "/users/me").1, "me");
            assert_eq!(body(&router, "GET", "/users/42").1, "id 42");
        }
    }

    #[test]
    fn method_names_are_case_insensitive_when_registered() {
        let router = Router::new().route("get", "/", echo_route);
        assert_eq!(body(&router, "GET", "/").0, 200);
    }

    #[test]
    #[should_panic(expected = "already exists")]
    fn a_route_with_the_same_shape_twice_is_a_bug() {
        let _ = Router::new()
            .get("/a/:x", echo_route)
            .get("/a/:y", echo_route);
    }

    #[test]
    #[should_panic(expected = "must start with `/`")]
    fn a_pattern_without_a_leading_slash_is_a_bug() {
        let _ = Router::new().get("items", echo_route);
    }

    #[test]
    #[should_panic(expected = "no name")]
    fn a_parameter_without_a_name_is_a_bug() {
        let _ = Router::new().get("/items/:", echo_route);
    }
}
