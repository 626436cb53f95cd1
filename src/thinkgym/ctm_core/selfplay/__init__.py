"""CTM self-play: harvest "good thinking" transitions and train the Two-Tick Unit on them.

The Two-Tick Unit ``f(State_t, KV) -> State_{t+2}`` (``TwoTickUnit`` in
``ctm_core/model.py``) is trained as a reusable *state improver*: on pairs
``(State_t, State_{t+2})`` cut from long rollouts where thinking visibly improved.
One cycle of :class:`~thinkgym.ctm_core.selfplay.master.MasterTrainer`::

    WeightManager.pick()            best weights (prob p) or an expert (random init /
         |                          historical best); exploration noise is part of the id
    DataGenerator (generator.py)    producer: long rollout in tick chunks
         |  bounded queue           filter workers: split the chunk along the batch,
         v                          streaming sliding filter (strict | loose rule)
    writer threads  -------------> DiskReplayBuffer: expert_replay_buffer/ (expert weights)
                                                     self_play_replay_buffer/ (best)
    train ONM (onm.py) on buffer samples; train a challenger cohort from best with the
    MixingSampler (q expert / 1-q self-play); add a weight-space merge of the cohort
    (merge.py) -> tournament by the state-improvement score on a fixed validation
    sample -> promote the winner (the old best joins the expert pool) -> anneal p and q

Modules (each imports torch; ``import thinkgym.ctm_core.selfplay`` itself does not):

``storage.py``  ``DataId`` (task, task config, split, item index: regenerates the input,
                hence K/V, on load), ``PairBatch`` (N transitions with per-row tick,
                losses and certainties at t, t+1, t+2, ``weight_id``, ``data_id``),
                compact encode/decode (fp16 option; ``A`` at t+2 stored as its two new
                columns; ``beta`` recomputed from the weights' decays and the tick).
``buffer.py``   ``DiskReplayBuffer``: two FIFO sub-buffers of checksummed shards written
                atomically (temp file + rename); exact counts; ``save_pairs``/``save_pair``,
                ``load_batch(n)``.
``weights.py``  ``WeightManager``: ``best_model.pth``, ``challenger_cohort/``,
                ``expert_pool/``; ``pick``, ``resolve(weight_id)``, ``promote``.
``merge.py``    weight-space merges of any state dicts: average, SLERP, TIES, DARE,
                task-vector arithmetic.
``filters.py``  the strict and loose improvement rules and ``StreamingFilter`` (carries
                the last two ticks between chunks: every pair is compared exactly once).
``generator.py`` ``DataGenerator``: the three-stage pipeline (and the all-at-once mode).
``unit.py``     state-matching loss with per-field weights, ``MixingSampler``,
                ``train_unit``.
``onm.py``      ``OpticNerveModel``, ``theta_features``, ``generate_initial_state``,
                ``train_onm``.
``master.py``   ``state_improvement_score``, ``MasterTrainer`` (cycles, tournament,
                promotion, annealing, CSV/TensorBoard logs, PNG curves).
``distributed.py`` the generator's stages as Ray actors (``pip install thinkgym[ray]``).
"""
