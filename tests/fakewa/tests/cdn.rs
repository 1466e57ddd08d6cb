//! The media CDN: an upload with the `media_conn` auth answers `{url, direct_path}`, the
//! direct path downloads the same bytes over HTTPS (trusting fakewa's CA) without auth, and
//! a wrong auth is refused. Profile pictures set over the control API are served from it.

mod common;

use common::*;
use whatsapp_rust::wacore::net::{HttpClient as _, HttpRequest};

#[test]
fn upload_then_download_round_trip() {
    smol::block_on(async {
        let server = start_fakewa(false).await;
        let cdn = server.state.cdn.get().unwrap().clone();
        assert_eq!(cdn.host(), server.cdn_addr.to_string());
        let ca = std::fs::read(&server.ca_pem_path).unwrap();
        let http = fakewa::client::CdnHttpClient::new(Some(&ca)).unwrap();
        let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();

        let url = format!(
            "https://{}/mms/image/TOKEN1?auth={}&token=TOKEN1",
            cdn.host(),
            cdn.auth()
        );
        let mut req = HttpRequest::post(url);
        req.body = Some(blob.clone().into());
        let answer = http.execute(req).await.unwrap();
        assert_eq!(answer.status_code, 200);
        let answer: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        let direct_path = answer["direct_path"].as_str().unwrap();
        assert!(direct_path.starts_with("/v/"), "{answer}");
        assert_eq!(
            answer["url"].as_str().unwrap(),
            format!("https://{}{direct_path}", cdn.host())
        );

        let got = http
            .execute(HttpRequest::get(format!(
                "https://{}{direct_path}?token=TOKEN1",
                cdn.host()
            )))
            .await
            .unwrap();
        assert_eq!(got.status_code, 200);
        assert_eq!(got.body, blob);

        // A resume probe of the finished upload says it is complete.
        let probe = format!(
            "https://{}/mms/image/TOKEN1?auth={}&token=TOKEN1&resume=1",
            cdn.host(),
            cdn.auth()
        );
        let probe = http.execute(HttpRequest::post(probe)).await.unwrap();
        let probe: serde_json::Value = serde_json::from_slice(&probe.body).unwrap();
        assert_eq!(probe["resume"], "complete");
        assert_eq!(probe["direct_path"], direct_path);

        let bad = format!("https://{}/mms/image/T2?auth=wrong&token=T2", cdn.host());
        let bad = http.execute(HttpRequest::post(bad)).await.unwrap();
        assert_eq!(bad.status_code, 401);
        let missing = format!("https://{}/v/fakewa/image/999.enc", cdn.host());
        let missing = http.execute(HttpRequest::get(missing)).await.unwrap();
        assert_eq!(missing.status_code, 404);
        assert_eq!(cdn.counts(), (1, 1, 1));
    });
}

#[test]
fn media_conn_announces_the_cdn() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot, client, _events, _jid) = link_connected(&server, "mona").await;
        let conn = client.refresh_media_conn(true).await.unwrap();
        assert_eq!(conn.hosts[0].hostname, server.cdn_addr.to_string());
        assert_eq!(conn.auth, server.state.cdn.get().unwrap().auth());
    });
}

#[test]
fn profile_pic_route_stores_a_picture_the_cdn_serves() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot, client, _events, _jid) = link_connected(&server, "nina").await;
        let number = state(&server).await["accounts"][0]["number"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(server.state.profile_picture_node(&number, false).is_none());
        let png = b"\x89PNG\r\n\x1a\nnot really a picture".to_vec();
        let body = serde_json::json!({
            "number": number,
            "png_base64": base64::Engine::encode(&base64::prelude::BASE64_STANDARD, &png),
        });
        let (status, answer) = http_async(
            server.control_addr,
            "POST",
            "/control/profile-pic",
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let node = server.state.profile_picture_node(&number, true).unwrap();
        assert_eq!(
            node.attrs.get("id").map(|v| v.to_string()),
            answer["id"].as_str().map(str::to_string)
        );
        let url = node.attrs.get("url").unwrap().to_string();
        let ca = std::fs::read(&server.ca_pem_path).unwrap();
        let http = fakewa::client::CdnHttpClient::new(Some(&ca)).unwrap();
        let got = http.execute(HttpRequest::get(url)).await.unwrap();
        assert_eq!((got.status_code, got.body), (200, png));

        // A real client's `w:profile:picture` get answers the same picture.
        let jid: whatsapp_rust::Jid = format!("{number}@s.whatsapp.net").parse().unwrap();
        let pic = client
            .contacts()
            .get_profile_picture(&jid, false)
            .await
            .unwrap()
            .expect("a picture");
        assert_eq!(pic.id, answer["id"].as_str().unwrap());
        let got = http.execute(HttpRequest::get(pic.url)).await.unwrap();
        assert_eq!(got.body, b"\x89PNG\r\n\x1a\nnot really a picture".to_vec());

        let bad = serde_json::json!({"number": "1", "png_base64": "AAAA"}).to_string();
        let (status, _) =
            http_async(server.control_addr, "POST", "/control/profile-pic", &bad).await;
        assert_eq!(status, 404);
        let bad = serde_json::json!({"number": number, "png_base64": "%%%"}).to_string();
        let (status, _) =
            http_async(server.control_addr, "POST", "/control/profile-pic", &bad).await;
        assert_eq!(status, 400);
    });
}
