package enforce

import "github.com/fqdngate/fqdngate/internal/ledger"

// RevokeLater queues the removal of elems and returns at once: it
// reports false, queuing nothing, when the writer's queue is full. The
// handler removes the elements of evicted entries this way, so that a
// query never waits for a removal; what is not queued expires on its own
// (the element's timeout). The writer batches these with the answers'
// grants, as it does every request.
func (n *NFT) RevokeLater(elems []ledger.Elem) bool {
	if len(elems) == 0 {
		return true
	}
	select {
	case n.reqs <- &request{revokes: elems, result: make(chan error, 1)}:
		return true
	default:
		return false
	}
}
