//! Neural-network building blocks (`nn.*`) and graph operators.

use super::shapes;
use mer_registry::{Kind, KindBuilder, ParamSpec, ParamType, Role, Value};

fn unary(name: &str, doc: &str) -> KindBuilder {
    KindBuilder::new(name, Role::Component)
        .doc(doc)
        .input("x", "input tensor")
        .output("out", "output tensor")
}

fn act() -> (ParamType, Option<Value>) {
    (
        ParamType::Str {
            choices: ["gelu", "relu", "silu", "tanh", "none"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        },
        Some(Value::Str("gelu".into())),
    )
}

/// The `lora = { ... }` record shared by LoRA-capable components.
pub fn lora_record() -> ParamType {
    let f = |name: &str, ty: ParamType, default: Value, doc: &str| ParamSpec {
        name: name.into(),
        ty,
        default: Some(default),
        doc: doc.into(),
    };
    ParamType::Record(vec![
        f(
            "rank",
            ParamType::Int {
                min: Some(1),
                max: None,
            },
            Value::Int(8),
            "Adapter rank r.",
        ),
        f(
            "alpha",
            ParamType::Float {
                min: Some(0.0),
                max: None,
            },
            Value::Float(16.0),
            "Scale numerator: the update is (alpha / r)·B·A.",
        ),
        f(
            "dropout",
            ParamType::Float {
                min: Some(0.0),
                max: Some(1.0),
            },
            Value::Float(0.0),
            "Dropout on the adapter input.",
        ),
        f(
            "targets",
            ParamType::List(Box::new(ParamType::Str { choices: vec![] })),
            Value::List(vec![
                Value::Str("q_proj".into()),
                Value::Str("v_proj".into()),
            ]),
            "Names of the projections that get adapters.",
        ),
    ])
}

pub fn kinds() -> Vec<Kind> {
    let (act_ty, act_default) = act();
    vec![
        unary("nn.linear", "Affine map over the last dimension; the input width is inferred.")
            .int("out", None, Some(1), "Output width.")
            .bool("bias", true, "Learn an additive bias.")
            .shapes(shapes::last_to_out)
            .factory(crate::nn::build_linear)
            .example(&[("out", Value::Int(3))], &[&[4, 5]])
            .build(),
        unary("nn.mlp", "Stack of linear layers with an activation and dropout between them.")
            .ints("hidden", Some(&[]), Some(1), "Hidden widths, in order (empty: a single linear layer).")
            .int("out", None, Some(1), "Output width.")
            .param("activation", act_ty.clone(), act_default.clone(), "Activation between layers.")
            .float("dropout", Some(0.0), Some(0.0), Some(1.0), "Dropout after each hidden activation.")
            .shapes(shapes::last_to_out)
            .factory(crate::nn::build_mlp)
            .example(&[("hidden", Value::List(vec![Value::Int(6)])), ("out", Value::Int(3)), ("dropout", Value::Float(0.2))], &[&[4, 5]])
            .build(),
        unary("nn.lora_linear", "Linear layer whose weight is frozen and adapted by a low-rank update.")
            .int("out", None, Some(1), "Output width.")
            .param("lora", lora_record(), Some(Value::Map(Default::default())), "Adapter settings.")
            .shapes(shapes::last_to_out)
            .factory(crate::nn::build_lora_linear)
            .example(&[("out", Value::Int(3))], &[&[4, 5]])
            .build(),
        unary("nn.conv2d", "2-D convolution over [B, C, H, W].")
            .int("out", None, Some(1), "Output channels.")
            .ints("kernel", Some(&[3, 3]), Some(1), "Kernel [kh, kw].")
            .ints("stride", Some(&[1, 1]), Some(1), "Stride [sh, sw].")
            .ints("padding", Some(&[0, 0]), Some(0), "Zero padding [ph, pw].")
            .int("groups", Some(1), Some(1), "Channel groups.")
            .bool("bias", true, "Learn a bias.")
            .shapes(shapes::conv2d)
            .factory(crate::nn::build_conv2d)
            .example(&[("out", Value::Int(3)), ("padding", Value::List(vec![Value::Int(1), Value::Int(1)]))], &[&[2, 2, 5, 5]])
            .build(),
        unary("nn.conv3d", "3-D convolution over [B, C, T, H, W], composed from one conv2d over stacked temporal taps (candle has no conv3d).")
            .int("out", None, Some(1), "Output channels.")
            .ints("kernel", Some(&[3, 3, 3]), Some(1), "Kernel [kt, kh, kw].")
            .ints("stride", Some(&[1, 1, 1]), Some(1), "Stride [st, sh, sw].")
            .ints("padding", Some(&[0, 0, 0]), Some(0), "Zero padding [pt, ph, pw].")
            .bool("bias", true, "Learn a bias.")
            .shapes(shapes::conv3d)
            .factory(crate::nn::build_conv3d)
            .example(&[("out", Value::Int(3)), ("kernel", Value::List(vec![Value::Int(2), Value::Int(3), Value::Int(3)])), ("padding", Value::List(vec![Value::Int(1), Value::Int(1), Value::Int(1)]))], &[&[2, 2, 4, 5, 5]])
            .build(),
        unary("nn.maxpool2d", "Max pooling over [B, C, H, W] (kernel = stride keeps the backward pass exact).")
            .ints("kernel", Some(&[2, 2]), Some(1), "Window [kh, kw].")
            .shapes(shapes::pool2d)
            .factory(crate::nn::build_maxpool)
            .example(&[], &[&[2, 2, 4, 4]])
            .build(),
        unary("nn.avgpool2d", "Average pooling over [B, C, H, W].")
            .ints("kernel", Some(&[2, 2]), Some(1), "Window [kh, kw].")
            .shapes(shapes::pool2d)
            .factory(crate::nn::build_avgpool)
            .example(&[], &[&[2, 2, 4, 4]])
            .build(),
        unary("nn.maxpool3d", "Max pooling over [B, C, T, H, W], composed from 2-D pooling and a temporal max.")
            .ints("kernel", Some(&[2, 2, 2]), Some(1), "Window [kt, kh, kw].")
            .shapes(shapes::pool3d)
            .factory(crate::nn::build_maxpool)
            .example(&[], &[&[1, 2, 4, 4, 4]])
            .build(),
        unary("nn.avgpool3d", "Average pooling over [B, C, T, H, W].")
            .ints("kernel", Some(&[2, 2, 2]), Some(1), "Window [kt, kh, kw].")
            .shapes(shapes::pool3d)
            .factory(crate::nn::build_avgpool)
            .example(&[], &[&[1, 2, 4, 4, 4]])
            .build(),
        unary("nn.batchnorm", "Batch normalisation over the channel dimension; running statistics in eval mode.")
            .float("momentum", Some(0.1), Some(0.0), Some(1.0), "Running-statistics momentum.")
            .float("eps", Some(1e-5), Some(0.0), None, "Numerical floor.")
            .shapes(shapes::same)
            .factory(crate::nn::build_batchnorm)
            .example(&[], &[&[4, 3, 5]])
            .build(),
        unary("nn.layernorm", "Layer normalisation in a differentiable form (candle's fused op records no backward).")
            .float("eps", Some(1e-5), Some(0.0), None, "Numerical floor.")
            .bool("affine", true, "Learn scale and shift.")
            .shapes(shapes::same)
            .factory(crate::nn::build_layernorm)
            .example(&[], &[&[3, 6]])
            .build(),
        unary("nn.rmsnorm", "RMS normalisation in a differentiable form.")
            .float("eps", Some(1e-6), Some(0.0), None, "Numerical floor.")
            .shapes(shapes::same)
            .factory(crate::nn::build_rmsnorm)
            .example(&[], &[&[3, 6]])
            .build(),
        unary("nn.dropout", "Dropout with mer's seeded RNG; identity in eval mode.")
            .float("p", Some(0.1), Some(0.0), Some(1.0), "Drop probability.")
            .bool("channelwise", false, "Drop whole channels (Dropout2d/3d).")
            .shapes(shapes::same)
            .factory(crate::nn::build_dropout)
            .example(&[("p", Value::Float(0.5))], &[&[4, 6]])
            .build(),
        unary("nn.gelu", "GELU (exact erf form).").shapes(shapes::same)
            .factory(crate::nn::build_gelu)
            .example(&[], &[&[3, 5]])
            .build(),
        unary("nn.relu", "ReLU.").shapes(shapes::same)
            .factory(crate::nn::build_relu)
            .example(&[], &[&[3, 5]])
            .build(),
        unary("nn.silu", "SiLU.").shapes(shapes::same)
            .factory(crate::nn::build_silu)
            .example(&[], &[&[3, 5]])
            .build(),
        unary("nn.sigmoid", "Logistic sigmoid.").shapes(shapes::same)
            .factory(crate::nn::build_sigmoid)
            .example(&[], &[&[3, 5]])
            .build(),
        unary("nn.se", "Squeeze-and-excitation channel gating.")
            .int("reduction", Some(16), Some(1), "Bottleneck reduction ratio.")
            .shapes(shapes::same)
            .factory(crate::nn::build_se)
            .example(&[("reduction", Value::Int(2))], &[&[2, 4, 3, 3]])
            .build(),
        unary("nn.flatten", "Flattens dimensions from `start` on.")
            .int("start", Some(1), Some(0), "First dimension to flatten.")
            .shapes(shapes::flatten)
            .factory(crate::nn::build_flatten)
            .example(&[], &[&[2, 3, 4]])
            .build(),
        unary("nn.tokens", "Feature map [B, C, ...] → tokens [B, N, C], N the product of the dims after C (a convolutional stem feeding attention).")
            .bool("positions", false, "Add a learned position embedding, so attention and pooling downstream know where each token came from.")
            .shapes(shapes::tokens)
            .factory(crate::nn::build_tokens)
            .example(&[("positions", Value::Bool(true))], &[&[2, 3, 2, 2, 2]])
            .build(),
        unary("nn.reshape", "Reshapes to `shape` (one entry may be -1).")
            .param("shape", ParamType::List(Box::new(ParamType::Int { min: Some(-1), max: None })), None, "Target shape after the batch dimension.")
            .shapes(shapes::reshape)
            .factory(crate::nn::build_reshape)
            .example(&[("shape", Value::List(vec![Value::Int(3), Value::Int(-1)]))], &[&[2, 4, 3]])
            .build(),
        unary("nn.pool_tokens", "Reduces a token sequence [B, N, D] to [B, D].")
            .choice("mode", &["mean", "max", "first", "last"], Some("mean"), "Reduction.")
            .shapes(shapes::pool_tokens)
            .factory(crate::nn::build_pool_tokens)
            .example(&[], &[&[2, 4, 5]])
            .build(),
        KindBuilder::new("nn.concat", Role::Component)
            .doc("Concatenates inputs along `dim` (features by default).")
            .variadic_input("xs", "tensors to join")
            .output("out", "joined tensor")
            .int("dim", Some(-1), None, "Dimension (negative counts from the end).")
            .shapes(shapes::concat)
            .factory(crate::nn::build_concat)
            .example(&[], &[&[2, 3], &[2, 4]])
            .build(),
        KindBuilder::new("nn.stack", Role::Component)
            .doc("Stacks inputs along a new dimension (e.g. several tokens into a sequence).")
            .variadic_input("xs", "tensors of one shape")
            .output("out", "stacked tensor")
            .int("dim", Some(1), Some(0), "Position of the new dimension.")
            .shapes(shapes::stack)
            .factory(crate::nn::build_stack)
            .example(&[], &[&[2, 3], &[2, 3]])
            .build(),
        KindBuilder::new("nn.add", Role::Component)
            .doc("Element-wise sum of inputs (with broadcasting).")
            .variadic_input("xs", "tensors")
            .output("out", "sum")
            .shapes(shapes::add)
            .factory(crate::nn::build_add)
            .example(&[], &[&[2, 3], &[2, 3]])
            .build(),
        unary("nn.attention", "Multi-head self-attention with an optional mask.")
            .param("heads", ParamType::Int { min: Some(1), max: Some(4096) }, Some(Value::Int(8)), "Attention heads.")
            .float("dropout", Some(0.0), Some(0.0), Some(1.0), "Attention dropout.")
            .bool("causal", false, "Mask future positions.")
            .shapes(shapes::self_attention)
            .factory(crate::nn::build_attention)
            .example(&[("heads", Value::Int(2)), ("causal", Value::Bool(true))], &[&[2, 3, 4]])
            .build(),
        KindBuilder::new("nn.cross_attention", Role::Component)
            .doc("Multi-head cross-attention: queries attend to a context sequence.")
            .input("query", "queries [B, Nq, D]")
            .input("context", "keys and values [B, Nk, Dk]")
            .optional_input("mask", "additive attention bias [B, Nq, Nk]")
            .output("out", "attended queries [B, Nq, D]")
            .param("heads", ParamType::Int { min: Some(1), max: Some(4096) }, Some(Value::Int(8)), "Attention heads.")
            .float("dropout", Some(0.0), Some(0.0), Some(1.0), "Attention dropout.")
            .shapes(shapes::cross_attention)
            .factory(crate::nn::build_cross_attention)
            .example(&[("heads", Value::Int(2))], &[&[2, 3, 4], &[2, 5, 6]])
            .build(),
        unary("nn.transformer_encoder", "Pre-norm transformer encoder blocks (self-attention + MLP).")
            .param("layers", ParamType::Int { min: Some(1), max: Some(1024) }, None, "Number of blocks (at most 1024).")
            .param("heads", ParamType::Int { min: Some(1), max: Some(4096) }, Some(Value::Int(8)), "Attention heads.")
            .float("mlp_ratio", Some(4.0), Some(0.0), None, "MLP width relative to the model width.")
            .float("dropout", Some(0.0), Some(0.0), Some(1.0), "Dropout.")
            .shapes(shapes::self_attention)
            .factory(crate::nn::build_encoder)
            .example(&[("layers", Value::Int(1)), ("heads", Value::Int(2)), ("mlp_ratio", Value::Float(2.0))], &[&[2, 3, 4]])
            .build(),
        KindBuilder::new("nn.transformer_decoder", Role::Component)
            .doc("Pre-norm transformer decoder blocks: optional self-attention, cross-attention to `memory`, MLP.")
            .input("query", "decoder input [B, N, D]")
            .input("memory", "encoder output [B, M, D]")
            .output("out", "decoded sequence [B, N, D]")
            .param("layers", ParamType::Int { min: Some(1), max: Some(1024) }, None, "Number of blocks (at most 1024).")
            .param("heads", ParamType::Int { min: Some(1), max: Some(4096) }, Some(Value::Int(8)), "Attention heads.")
            .float("mlp_ratio", Some(4.0), Some(0.0), None, "MLP width relative to the model width.")
            .float("dropout", Some(0.0), Some(0.0), Some(1.0), "Dropout.")
            .bool("self_attention", true, "Include self-attention in each block.")
            .shapes(shapes::decoder)
            .factory(crate::nn::build_decoder)
            .example(&[("layers", Value::Int(1)), ("heads", Value::Int(2)), ("mlp_ratio", Value::Float(2.0))], &[&[2, 3, 4], &[2, 5, 4]])
            .build(),
        unary("nn.patch_embed", "ViT patch embedding of images [B, C, H, W] → tokens [B, N, D].")
            .int("patch", Some(16), Some(1), "Patch size.")
            .int("dim", None, Some(1), "Token width.")
            .bool("cls_token", true, "Prepend a learnable class token.")
            .shapes(shapes::patch_embed)
            .factory(crate::nn::build_patch_embed)
            .example(&[("patch", Value::Int(2)), ("dim", Value::Int(4))], &[&[2, 3, 4, 4]])
            .build(),
        unary("nn.tubelet_embed", "Video tubelet embedding [B, C, T, H, W] → tokens [B, N, D] (VideoMAE style).")
            .ints("tubelet", Some(&[2, 16, 16]), Some(1), "Tubelet [t, h, w].")
            .int("dim", None, Some(1), "Token width.")
            .shapes(shapes::tubelet_embed)
            .factory(crate::nn::build_tubelet_embed)
            .example(&[("tubelet", Value::List(vec![Value::Int(2), Value::Int(2), Value::Int(2)])), ("dim", Value::Int(4))], &[&[1, 2, 4, 4, 4]])
            .build(),
    ]
}
