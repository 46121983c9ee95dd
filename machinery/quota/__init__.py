"""Resource quota arithmetic and evaluators shared by the apiserver's admission and the
controller-manager: :mod:`.resourcelists` (resource lists, quota names), :mod:`.evaluators`
(what an object costs, scopes) and :mod:`.limitranges` (LimitRange defaults and checks)."""
