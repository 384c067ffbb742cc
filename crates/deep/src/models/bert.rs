//! BERT for sequence classification: candle-transformers' BERT encoder, the
//! pooler (dense + tanh on the first token) and the classifier head, as
//! `BertForSequenceClassification` stores them. The deep scan compares the
//! label distributions of a fine-tuned classifier and its base.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::bert::{BertModel, Config};
use serde_json::Value;

pub struct BertClassifier {
    pub cfg: Config,
    encoder: BertModel,
    word_embeddings: Tensor,
    pooler: Linear,
    classifier: Linear,
    /// Label names by class index (`id2label`, or `LABEL_i`).
    pub labels: Vec<String>,
}

/// The first of `names` the checkpoint has, as a prefix for `vb`.
fn prefixed<'a>(vb: &VarBuilder<'a>, names: &[&str], leaf: &str) -> Option<VarBuilder<'a>> {
    names
        .iter()
        .find(|p| vb.contains_tensor(&format!("{p}.{leaf}")))
        .map(|p| vb.pp(*p))
}

impl BertClassifier {
    pub fn load(vb: VarBuilder, raw: &Value) -> Result<Self> {
        let cfg: Config = serde_json::from_value(raw.clone())
            .map_err(|e| candle_core::Error::Msg(format!("config.json: {e}")))?;
        let h = cfg.hidden_size;
        let encoder = BertModel::load(vb.clone(), &cfg)?;
        let word_embeddings = prefixed(
            &vb,
            &[
                "bert.embeddings.word_embeddings",
                "embeddings.word_embeddings",
            ],
            "weight",
        )
        .ok_or_else(|| candle_core::Error::Msg("no word embeddings".into()))?
        .get((cfg.vocab_size, h), "weight")?;
        let pooler =
            prefixed(&vb, &["bert.pooler.dense", "pooler.dense"], "weight").ok_or_else(|| {
                candle_core::Error::Msg(
                    "no pooler (bert.pooler.dense): not a BertForSequenceClassification checkpoint"
                        .into(),
                )
            })?;
        let pooler = candle_nn::linear(h, h, pooler)?;
        let n_labels = match vb.get_unchecked("classifier.weight") {
            Ok(w) => w.dim(0)?,
            Err(_) => {
                return Err(candle_core::Error::Msg(
                    "no classifier head (classifier.weight)".into(),
                ))
            }
        };
        let classifier = candle_nn::linear(h, n_labels, vb.pp("classifier"))?;
        let labels = (0..n_labels)
            .map(|i| {
                raw["id2label"][i.to_string()]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("LABEL_{i}"))
            })
            .collect();
        Ok(BertClassifier {
            cfg,
            encoder,
            word_embeddings,
            pooler,
            classifier,
            labels,
        })
    }

    pub fn embeddings(&self) -> &Tensor {
        &self.word_embeddings
    }

    /// Class logits `[labels]` for one encoded sequence (with its [CLS] and
    /// [SEP] tokens).
    pub fn classify(&self, ids: &[u32]) -> Result<Tensor> {
        let dev = self.word_embeddings.device();
        let ids = Tensor::new(ids, dev)?.unsqueeze(0)?;
        let types = ids.zeros_like()?;
        let hidden = self.encoder.forward(&ids, &types, None)?; // [1, T, H]
        let first = hidden.get(0)?.get(0)?.unsqueeze(0)?; // [1, H]
        let pooled = self.pooler.forward(&first)?.tanh()?;
        self.classifier.forward(&pooled)?.squeeze(0)
    }
}
