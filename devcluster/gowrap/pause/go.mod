module strategy-rollouts/devcluster/gowrap/pause

go 1.24
