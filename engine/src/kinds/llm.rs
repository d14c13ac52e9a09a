//! Language-model bodies (`llm.*`) that take embeddings, not only token ids.

use super::nn::lora_record;
use super::shapes;
use mer_registry::{ExampleInput, Kind, KindBuilder, ParamType, Role, Value};

pub fn kinds() -> Vec<Kind> {
    vec![
        KindBuilder::new("llm.causal", Role::Component)
            .doc("A LLaMA- or Qwen2-family causal LM loaded from an HF folder (config.json + safetensors) or a GGUF file. Visual tokens are spliced before the prompt; every position's hidden state is returned. Base weights are frozen; LoRA adapters train.")
            .variadic_input("prefix", "visual tokens [B, N, D_llm] placed before the prompt")
            .output("last", "hidden state of the last position [B, D_llm]")
            .output("hidden", "hidden states of every position [B, T, D_llm]")
            .output("prefix_hidden", "hidden states at the prefix positions [B, N, D_llm]")
            .output("logits", "vocabulary logits at every position [B, T, V]")
            .path("weights", None, "HF model folder or .gguf file.")
            .param("tokenizer", ParamType::Optional(Box::new(ParamType::Path)), Some(Value::None), "tokenizer.json; none uses the folder's or the GGUF metadata.")
            .string("before", Some(""), "Text placed before the prefix tokens, e.g. a chat template's opening `<|im_start|>user\\n`: position 0 of most LLMs is an attention sink whose content is largely ignored.")
            .string("prompt", Some(""), "Text placed after the prefix tokens.")
            .choice("dtype", &["f32", "f16", "bf16"], Some("f32"), "Compute dtype of the frozen base (CPU computes in f32).")
            .param("lora", ParamType::Optional(Box::new(lora_record())), Some(Value::None), "LoRA adapters; none keeps the LLM frozen.")
            .param("layers", ParamType::Optional(Box::new(ParamType::Int { min: Some(1), max: None })), Some(Value::None), "Keep only the first N decoder layers (then the final norm): a shallower, faster body from the same weights. none keeps all.")
            .shapes(shapes::llm_causal)
            .factory(crate::llm::build_causal)
            .build(),
        KindBuilder::new("llm.prompt", Role::Component)
            .doc("Learnable soft-prompt tokens (CoOp style), an ablation stand-in for visual tokens: the same n learnt tokens for every sample.")
            .input("like", "any tensor whose first dimension is the batch (e.g. `clips.video`); only its batch size is used")
            .output("out", "prompt tokens [B, n, D]")
            .int("tokens", Some(1), Some(1), "Number of learnable tokens.")
            .int("dim", None, Some(1), "Token width (the LLM hidden size).")
            .float("init_std", Some(0.02), Some(0.0), None, "Initialisation standard deviation.")
            .shapes(shapes::llm_prompt)
            .factory(crate::llm::build_prompt)
            // `like` only gives the batch size: a class-index input, not differentiated.
            .example_inputs(
                &[("tokens", Value::Int(2)), ("dim", Value::Int(3))],
                vec![ExampleInput::ClassIndex { dims: vec![2], classes: 3 }],
            )
            .build(),
    ]
}
