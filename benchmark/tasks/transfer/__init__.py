"""The transfer task (TransRec, Tables 6-9): pretrain on source domains, fine-tune on a target.

``stages`` holds what one condition computes; ``grid`` plans the conditions and runs them on the
engine."""
