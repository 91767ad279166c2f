"""train(cfg): one Lightning training run (text classifier or translation model), tracked in MLflow.

Writes to out_dir (atomically): model.pt (weights), model.json (what is needed to rebuild and use
the model: task, config, vocabulary sizes, labels), the tokenizer file(s), train_summary.json
(history, timing, parameter count, MLflow run id) and config.yaml.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from rnnlab.config import MONITORS, variant_name
from rnnlab.errors import ConfigError
from rnnlab.io import atomic_dir, write_json


def _progress_bar(cfg: DictConfig) -> tuple[list, bool, bool]:
    """(callbacks, enable_progress_bar, print epoch lines)."""
    mode = cfg.trainer.progress_bar
    use_bar = sys.stdout.isatty() if mode == "auto" else bool(mode)
    if use_bar:
        from pytorch_lightning.callbacks import RichProgressBar

        return [RichProgressBar()], True, False
    return [], False, True


def _build(cfg: DictConfig):
    """(datamodule, LightningModule, task-specific model.json entries, tokenizer files to copy)."""
    from rnnlab.data.prepare import TRANSLATION_TOKENIZERS, embeddings_dir, load_matrix, tokenized_dir

    matrix = load_matrix(embeddings_dir(cfg))
    model_cfg, optim_cfg = OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.optim)
    seed, batch, workers = int(cfg.seed), int(cfg.optim.batch_size), int(cfg.trainer.num_workers)
    if cfg.task.name == "translate":
        from rnnlab.data.datamodule import TranslationDataModule
        from rnnlab.training.seq2seq_module import Seq2SeqModule

        data = TranslationDataModule(tokenized_dir(cfg), batch, seed, workers)
        sizes = {side: t.get_vocab_size() for side, t in data.tokenizers.items()}
        module = Seq2SeqModule(model_cfg, optim_cfg, sizes["source"], sizes["target"], matrix,
                               data.tokenizers["target"], data.val_keys, data.val_references)
        info = {"src_vocab_size": sizes["source"], "tgt_vocab_size": sizes["target"],
                "embedding_dim": int(matrix.shape[1]),
                "max_length": int(cfg.tokenizer.source.max_length)}
        return data, module, info, list(TRANSLATION_TOKENIZERS.values())
    if cfg.task.name != "classify":
        raise ConfigError(f"task={cfg.task.name!r} has no trainer yet; allowed: classify, translate")
    from rnnlab.data.datamodule import ClassificationDataModule
    from rnnlab.training.module import ClassifierModule

    data = ClassificationDataModule(tokenized_dir(cfg), batch, seed, workers)
    module = ClassifierModule(model_cfg, optim_cfg, vocab_size=matrix.shape[0], embedding_dim=matrix.shape[1],
                              num_classes=len(data.label_names), embeddings=matrix)
    info = {"vocab_size": int(matrix.shape[0]), "embedding_dim": int(matrix.shape[1]),
            "label_names": data.label_names, "max_length": int(cfg.tokenizer.max_length)}
    return data, module, info, ["tokenizer.json"]


def train(cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None) -> dict:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from rnnlab.data.prepare import tokenized_dir
    from rnnlab.tracking.mlflow_utils import flatten, log_pytorch_model, make_logger, run_tags, system_info
    from rnnlab.training.callbacks import History

    out_dir = Path(out_dir)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    data, module, task_info, tokenizer_files = _build(cfg)
    params = sum(p.numel() for p in module.model.parameters())
    trainable = sum(p.numel() for p in module.model.parameters() if p.requires_grad)

    variant = variant_name(cfg)
    logger = make_logger(cfg, f"{cfg.data.name}/{variant}/seed{cfg.seed}", run_tags(cfg, overrides or []))
    logger.log_hyperparams({**flatten(cfg), **system_info(str(cfg.trainer.accelerator))})
    logger.log_metrics({"parameters": params, "trainable_parameters": trainable}, step=0)

    monitor = cfg.task.monitor
    ckpt_dir = Path(tempfile.mkdtemp(prefix="rnnlab-ckpt-"))
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor,
                                 mode=MONITORS[monitor], save_top_k=1)
    early = EarlyStopping(monitor=monitor, mode=MONITORS[monitor], patience=int(cfg.trainer.patience))
    bar_callbacks, enable_bar, print_lines = _progress_bar(cfg)
    history = History(print_lines)
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices,
        strategy=cfg.trainer.strategy, precision=cfg.trainer.precision,
        max_epochs=int(cfg.trainer.max_epochs), min_epochs=int(cfg.trainer.min_epochs),
        gradient_clip_val=cfg.trainer.gradient_clip_val, deterministic=cfg.trainer.deterministic,
        limit_train_batches=cfg.trainer.limit_train_batches,
        callbacks=[checkpoint, early, history, *bar_callbacks], logger=logger,
        enable_progress_bar=enable_bar, enable_model_summary=False, log_every_n_steps=10,
        use_distributed_sampler=False, default_root_dir=str(ckpt_dir),
    )
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=data)
        fit_seconds = time.perf_counter() - start
        if not trainer.is_global_zero:
            return {}
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        module.load_state_dict(best["state_dict"])
        summary = {
            "variant": variant,
            "dataset": cfg.data.name,
            "best_epoch": int(best["epoch"]) + 1,
            "best_" + monitor: float(checkpoint.best_model_score),
            "epochs_run": len(history.rows),
            "fit_seconds": round(fit_seconds, 2),
            "seconds_per_epoch": round(sum(history.seconds) / max(len(history.seconds), 1), 3),
            "train_tokens_per_second": round(history.tokens / max(history.train_seconds, 1e-9)),
            "parameters": params,
            "trainable_parameters": trainable,
            "history": history.rows,
            "mlflow": {"tracking_uri": cfg.tracking.tracking_uri,
                       "experiment_id": logger.experiment_id, "run_id": logger.run_id},
        }
        if cfg.tracking.log_model:  # the model as an MLflow model (mlflow.pytorch), for the registry
            summary["mlflow"]["model_uri"] = log_pytorch_model(cfg.tracking.tracking_uri, logger.run_id,
                                                               module.model)
        model_info = {
            "task": cfg.task.name,
            "model": OmegaConf.to_container(cfg.model),
            **task_info,
            "config": OmegaConf.to_container(cfg, resolve=True),
        }
        with atomic_dir(out_dir) as tmp:
            torch.save(module.model.state_dict(), tmp / "model.pt")
            write_json(tmp / "model.json", model_info)
            for name in tokenizer_files:
                shutil.copy(Path(tokenized_dir(cfg)) / name, tmp / name)
            write_json(tmp / "train_summary.json", summary)
            (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
            logger.experiment.log_artifact(logger.run_id, str(tmp / "config.yaml"))
            if cfg.tracking.log_checkpoint:
                logger.experiment.log_artifact(logger.run_id, checkpoint.best_model_path, "checkpoint")
        logger.experiment.log_metric(logger.run_id, "best_" + monitor, float(checkpoint.best_model_score))
        logger.experiment.log_metric(logger.run_id, "train_tokens_per_second_mean",
                                     summary["train_tokens_per_second"])
        return summary
    except BaseException:
        if logger.run_id is not None:  # the run must not look like a finished training
            logger.experiment.set_terminated(logger.run_id, "FAILED")
        raise
    finally:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
