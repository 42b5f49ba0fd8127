# The expert and its demonstrations, per game.


rule train_expert:
    output:
        expert=GAME_DIR + "/expert/expert.pt",
        summary=GAME_DIR + "/expert/summary.json",
    log:
        "logs/{game}/train_expert.log",
    benchmark:
        RES + "/benchmarks/{game}/train_expert.tsv"
    params:
        ppo=lambda wc: " ".join(
            f"--{key.replace('_', '-')} {value}"
            for key, value in ATARI["expert"].items()
            if key != "threads"
        ),
        seed=config["seed"],
    threads: ATARI["expert"]["threads"]
    resources:
        mem_mb=4000,
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} train-expert --game {wildcards.game} {params.ppo} --seed {params.seed} "
        "--num-threads {threads} --out {output.expert} --summary {output.summary} > {log} 2>&1"


rule record_demonstrations:
    input:
        expert=rules.train_expert.output.expert,
    output:
        train=GAME_DIR + "/demos/train.npz",
        heldout=GAME_DIR + "/demos/heldout.npz",
        card=GAME_DIR + "/demos/card.json",
    log:
        "logs/{game}/record_demonstrations.log",
    benchmark:
        RES + "/benchmarks/{game}/record_demonstrations.tsv"
    params:
        demos=ATARI["demonstrations"],
        greedy="--greedy" if ATARI["demonstrations"]["greedy"] else "--no-greedy",
        seed=config["seed"],
    threads: 2
    resources:
        mem_mb=lambda wc: 2000 + ATARI["demonstrations"]["frames"] * 84 * 84 * 3 // 2**20,
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} record-demos --expert {input.expert} --out-dir $(dirname {output.card}) "
        "--frames {params.demos[frames]} --heldout-fraction {params.demos[heldout_fraction]} "
        "--num-envs {params.demos[num_envs]} --max-episode-steps {params.demos[max_episode_steps]} "
        "--seed {params.seed} --threads {threads} {params.greedy} > {log} 2>&1"
