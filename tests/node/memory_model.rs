//! The real All-MiniLM-L6-v2 weights through candle, against reference
//! vectors made with the Python sentence-transformers library.

use caxton::memory::{dot, Embedder};
use caxton_testing::models_dir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_match_sentence_transformers() {
    let reference: serde_json::Value = serde_json::from_str(include_str!("../data/minilm_reference.json")).unwrap();
    let items = reference["items"].as_array().unwrap();
    assert!(items.len() >= 10);
    let embedder = Embedder::start(models_dir().join("all-minilm-l6-v2")).unwrap();
    let texts: Vec<String> = items.iter().map(|i| i["text"].as_str().unwrap().to_owned()).collect();
    // Batched (mixed lengths, padding in play) and one at a time must both agree.
    let batched = embedder.embed(texts.clone()).await.unwrap();
    for (item, got) in items.iter().zip(&batched) {
        let want: Vec<f32> = item["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(got.len(), 384);
        let norm = dot(got, got).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
        let cos = dot(got, &want);
        assert!(cos >= 0.999, "cosine {cos} for {:?}", item["text"]);
    }
    let single = embedder.embed_one(&texts[2]).await.unwrap();
    assert!(dot(&single, &batched[2]) > 0.9999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paraphrase_ranks_above_unrelated_text() {
    let e = Embedder::start(models_dir().join("all-minilm-l6-v2")).unwrap();
    let v = e
        .embed(vec![
            "The cat sits on the mat.".into(),
            "A feline is resting on a rug.".into(),
            "Quarterly revenue grew by twelve percent.".into(),
        ])
        .await
        .unwrap();
    assert!(
        dot(&v[0], &v[1]) > dot(&v[0], &v[2]) + 0.2,
        "paraphrase {} vs unrelated {}",
        dot(&v[0], &v[1]),
        dot(&v[0], &v[2])
    );
}

#[test]
fn a_missing_model_directory_is_a_clear_error() {
    let err = Embedder::start("/nonexistent/minilm".into()).err().unwrap().to_string();
    assert!(err.contains("/nonexistent/minilm") && err.contains("make models"), "{err}");
}
