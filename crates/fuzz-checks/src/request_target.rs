//! The gateway's request-target normaliser: whatever it accepts is a path
//! that routing and the upstream read the same way.

use frameway_gateway::target::RequestTarget;

/// Parses the bytes as a request target; an accepted one must be an
/// absolute path with no dot-segment and no encoded separator, keep its
/// query as sent, and normalise to itself.
pub fn check(data: &[u8]) {
    let Ok(uri) = http::Uri::try_from(data) else {
        return;
    };
    let Ok(target) = RequestTarget::parse(&uri) else {
        return;
    };
    let path = target.path();
    assert!(path.starts_with('/'), "{path:?}");
    for segment in path[1..].split('/') {
        assert!(segment != "." && segment != "..", "dot-segment in {path:?}");
    }
    let upper = path.to_ascii_uppercase();
    for encoded in ["%2F", "%5C", "%2E"] {
        assert!(!upper.contains(encoded), "{encoded} in {path:?}");
    }
    assert_eq!(
        target.path_and_query().split_once('?').map(|(_, q)| q),
        uri.query()
    );
    let again = http::Uri::try_from(target.path_and_query()).expect("a normalised target parses");
    let again = RequestTarget::parse(&again).expect("a normalised target is accepted");
    assert_eq!(again.path_and_query(), target.path_and_query());
}
