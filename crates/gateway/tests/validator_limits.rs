//! `websocket-validator` against a hostile message: a schema whose `allOf`
//! chain of definitions leads back to the root through a property, and a
//! small message nested 127 deep. Each level costs a hundred nested checks;
//! on a worker's stack they overflowed it and aborted the whole process.
//! Validated on a stack of its own, the message is judged as the schema
//! says (it is valid) and the gateway serves on.

mod support;

use support::*;

/// `{"allOf":[{"$ref":"#/definitions/d0"}], "definitions": {d0 .. d99}}`,
/// each `dN` an `allOf` of `dN+1`, and `d99` sending property `a` back to
/// the root.
fn self_referring_schema() -> String {
    let mut definitions: Vec<String> = (0..99)
        .map(|i| {
            format!(
                r##""d{i}":{{"allOf":[{{"$ref":"#/definitions/d{}"}}]}}"##,
                i + 1
            )
        })
        .collect();
    definitions
        .push(r##""d99":{"type":["object","null"],"properties":{"a":{"$ref":"#"}}}"##.into());
    format!(
        r##"{{"allOf":[{{"$ref":"#/definitions/d0"}}],"definitions":{{{}}}}}"##,
        definitions.join(",")
    )
}

#[tokio::test]
async fn a_deeply_nested_message_is_validated_not_a_crash() {
    let (upstream, mut conns) = scripted_upstream().await;
    let plugin = format!(
        "  [[services.routes.plugins]]\n  name = \"websocket-validator\"\n  \
         config = {{ client = {{ text = {{ type = \"draft7\", schema = '{}' }} }}, action = \"close\" }}\n",
        self_referring_schema()
    );
    let gw = gateway(&one_route(upstream, &plugin)).await;

    let mut shallow = connect(gw, "/").await;
    shallow.send_text(r#"{"a":{"a":null}}"#).await.unwrap();
    shallow.send_text(r#"{"a":1}"#).await.unwrap();
    assert_eq!(
        expect_close(&mut shallow).await.0,
        1007,
        "a number is not an object"
    );

    let deep = format!("{}null{}", r#"{"a":"#.repeat(127), "}".repeat(127));
    assert!(deep.len() < 800);
    let mut client = connect(gw, "/").await;
    let _shallow_upstream = next_upstream(&mut conns).await;
    let mut upstream = next_upstream(&mut conns).await.ws;
    client.send_text(deep.clone()).await.unwrap();
    assert_eq!(recv_text(&mut upstream).await, deep, "valid, and forwarded");
    client.send_text(r#"{"a":{"a":1}}"#).await.unwrap();
    assert_eq!(expect_close(&mut client).await.0, 1007);

    // The process is alive and still validating.
    let mut again = connect(gw, "/").await;
    again.send_text(r#"{"a":[]}"#).await.unwrap();
    assert_eq!(expect_close(&mut again).await.0, 1007);
}
