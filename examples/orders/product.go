package orders

import "fmt"

// Product is the write model of a catalog product.
type Product struct {
	ID           string
	Created      bool
	Name         string
	PriceCents   int64
	Discontinued bool
}

// NewProduct returns an empty product, for [es.NewRepository].
func NewProduct(id string) *Product { return &Product{ID: id} }

// Apply implements [es.Aggregate].
func (p *Product) Apply(event any) error {
	switch e := event.(type) {
	case ProductCreated:
		p.Created, p.Name, p.PriceCents = true, e.Name, e.PriceCents
	case ProductRenamed:
		p.Name = e.Name
	case ProductRepriced:
		p.PriceCents = e.PriceCents
	case ProductDiscontinued:
		p.Discontinued = true
	default:
		return fmt.Errorf("product: unexpected event %T", event)
	}
	return nil
}
