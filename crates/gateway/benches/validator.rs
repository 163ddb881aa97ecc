//! The per-message cost of `websocket-validator`: a realistic 1 KiB JSON
//! message (an order event: ids, enums, prices, a list of line items)
//! checked against the schema a service would publish for it, through a
//! route's plugin chain in memory (no sockets). Parsing the message is
//! included: it is part of what the plugin does per message.
//!
//! `cargo bench -p frameway-gateway --bench validator`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use frameway_gateway::plugin::{Chain, Direction, FrameType, Registry, Session, Verdict};

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["type", "id", "account", "placed_at", "side", "items", "total"],
  "additionalProperties": false,
  "properties": {
    "type": { "enum": ["order.placed", "order.amended", "order.cancelled"] },
    "id": { "type": "string", "minLength": 8, "maxLength": 64 },
    "account": {
      "type": "object",
      "required": ["id", "tier"],
      "properties": {
        "id": { "type": "integer", "minimum": 1 },
        "tier": { "enum": ["retail", "pro", "institutional"] },
        "tags": { "type": "array", "items": { "type": "string" }, "maxItems": 16 }
      }
    },
    "placed_at": { "type": "string", "minLength": 20, "maxLength": 32 },
    "side": { "enum": ["buy", "sell"] },
    "items": {
      "type": "array",
      "minItems": 1,
      "maxItems": 50,
      "items": {
        "type": "object",
        "required": ["sku", "quantity", "price"],
        "properties": {
          "sku": { "type": "string", "minLength": 3, "maxLength": 32 },
          "quantity": { "type": "integer", "minimum": 1, "maximum": 100000 },
          "price": { "type": "number", "minimum": 0.01 },
          "note": { "type": "string", "maxLength": 200 }
        }
      }
    },
    "total": { "type": "number", "minimum": 0 },
    "currency": { "enum": ["EUR", "USD", "GBP", "JPY"] }
  }
}"#;

/// About 1 KiB of JSON that the schema accepts.
fn message() -> Bytes {
    let items: Vec<String> = (0..9)
        .map(|i| {
            format!(
                r#"{{"sku":"SKU-{i:05}","quantity":{},"price":{}.25,"note":"gift wrap, deliver after 6pm"}}"#,
                i + 1,
                10 + i
            )
        })
        .collect();
    let text = format!(
        r#"{{"type":"order.placed","id":"ord_7f3a9c1e2b","account":{{"id":48213,"tier":"pro","tags":["eu","beta"]}},"placed_at":"2026-12-06T10:15:30.123Z","side":"buy","items":[{}],"total":1234.5,"currency":"EUR"}}"#,
        items.join(",")
    );
    Bytes::from(text)
}

fn validator_chain(draft: &str) -> Chain {
    let config = serde_json::json!({
        "client": { "text": { "type": draft, "schema": SCHEMA } }
    });
    let plugin = Registry::with_builtins()
        .build("websocket-validator", &config)
        .expect("the schema compiles");
    Chain::new(vec![plugin])
}

fn validate(c: &mut Criterion) {
    let message = message();
    let mut group = c.benchmark_group("websocket-validator");
    group.throughput(Throughput::Bytes(message.len() as u64));
    for draft in ["draft4", "draft7"] {
        let mut session = Session::new(validator_chain(draft));
        let outcome = session
            .frame(Direction::Client, FrameType::Text, message.clone(), None)
            .unwrap();
        assert_eq!(outcome.verdict, Verdict::Forward, "the message is valid");
        group.bench_function(format!("1 KiB order, {draft}"), |b| {
            b.iter(|| {
                session
                    .frame(Direction::Client, FrameType::Text, message.clone(), None)
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
