//! Instruments: adding one (with its checks), halting and resuming, and the
//! lookups from an `InstrumentId` to its slot.
//!
//! Instrument slots are handed out in order and never freed; a spec is
//! accepted only when valid and, for settling instruments, when its assets'
//! escrows and fee account exist, so matching never meets an unusable spec.

use super::*;

pub(super) fn empty_spec() -> InstrumentSpec {
    InstrumentSpec {
        id: InstrumentId(0),
        symbol: Symbol::default(),
        base: Asset::default(),
        quote: Asset::default(),
        tick: 1,
        lot_size: 1,
        qty_min: 1,
        qty_max: 1,
        reference_price: Price(1),
        band_bps: None,
        circuit_bps: None,
        circuit_window_ns: 0,
        maker_fee_bps: 0,
        taker_fee_bps: 0,
        fee_account: AccountId(0),
        settle: false,
        open_orders_max: None,
        notional_max: None,
    }
}

impl Engine {
    pub(super) fn inst_slot(&self, id: InstrumentId) -> Option<u32> {
        self.instrument_index.get(id.0 as u128)
    }

    /// The slot of an optional instrument filter (mass cancel, open-order
    /// queries); `Err` once an unknown instrument has been rejected.
    pub(super) fn inst_filter(
        &self,
        instrument: Option<InstrumentId>,
        out: &mut Events,
    ) -> Result<Option<u32>, ()> {
        let Some(id) = instrument else {
            return Ok(None);
        };
        match self.inst_slot(id) {
            Some(s) => Ok(Some(s)),
            None => {
                out.push(Event::Rejected {
                    target: RejectTarget::Instrument(id),
                    reason: RejectReason::UnknownInstrument,
                });
                Err(())
            }
        }
    }

    pub(super) fn reference(&self, inst: u32) -> Price {
        let i = &self.instruments[inst as usize];
        i.last_trade.unwrap_or(i.spec.reference_price)
    }

    pub(super) fn handle_add_instrument(&mut self, spec: &InstrumentSpec, out: &mut Events) {
        let reject = |out: &mut Events, reason| {
            out.push(Event::Rejected {
                target: RejectTarget::Instrument(spec.id),
                reason,
            })
        };
        if self.inst_slot(spec.id).is_some() {
            return reject(out, RejectReason::InstrumentExists);
        }
        let valid = spec.id.0 != 0
            && spec.symbol.is_valid()
            && spec.base.is_valid()
            && spec.quote.is_valid()
            && spec.tick > 0
            && spec.lot_size > 0
            && spec.qty_min > 0
            && spec.qty_min <= spec.qty_max
            && spec.reference_price.0 > 0
            && spec.reference_price.0.is_multiple_of(spec.tick)
            && spec.base != spec.quote
            && spec.maker_fee_bps <= BPS as u32
            && spec.taker_fee_bps <= BPS as u32
            && (spec.circuit_bps.is_none() || spec.circuit_window_ns > 0)
            && spec.open_orders_max != Some(0);
        if !valid {
            return reject(out, RejectReason::InvalidInstrument);
        }
        let mut fee_slot = NO_ACCOUNT;
        if spec.settle && (spec.maker_fee_bps > 0 || spec.taker_fee_bps > 0) {
            // Fees need a fee account in the quote asset that can take credits.
            let ok = self.ledger.account_slot(spec.fee_account).is_some_and(|f| {
                let a = &self.ledger.accounts[f as usize];
                fee_slot = f;
                Some(a.asset) == self.ledger.asset_idx(&spec.quote)
                    && !a.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            });
            if !ok {
                return reject(out, RejectReason::InvalidInstrument);
            }
        }
        if self.instrument_count >= self.instruments.len()
            || (spec.settle && !self.ledger.prepare_escrows([&spec.base, &spec.quote]))
        {
            return reject(out, RejectReason::CapacityExceeded);
        }
        let slot = self.instrument_count as u32;
        self.instrument_count += 1;
        let i = &mut self.instruments[slot as usize];
        i.spec = *spec;
        i.last_trade = None;
        i.halted = None;
        i.window = None;
        i.anchor = spec.reference_price;
        if spec.settle {
            i.base_asset = self.ledger.asset_idx(&spec.base).expect("escrows prepared");
            i.quote_asset = self
                .ledger
                .asset_idx(&spec.quote)
                .expect("escrows prepared");
            i.fee_slot = fee_slot;
        } else {
            i.base_asset = NO_ACCOUNT;
            i.quote_asset = NO_ACCOUNT;
            i.fee_slot = NO_ACCOUNT;
        }
        let inserted = self.instrument_index.insert(spec.id.0 as u128, slot);
        assert!(inserted, "instrument index sized to instruments_max");
    }

    pub(super) fn handle_halt(&mut self, id: InstrumentId, out: &mut Events) {
        let Some(s) = self.inst_slot(id) else {
            return out.push(Event::Rejected {
                target: RejectTarget::Instrument(id),
                reason: RejectReason::UnknownInstrument,
            });
        };
        let inst = &mut self.instruments[s as usize];
        if inst.halted.is_none() {
            inst.halted = Some(HaltReason::Operator);
            out.push(Event::Halted {
                instrument: id,
                reason: HaltReason::Operator,
            });
        }
    }

    pub(super) fn handle_resume(&mut self, id: InstrumentId, out: &mut Events) {
        let Some(s) = self.inst_slot(id) else {
            return out.push(Event::Rejected {
                target: RejectTarget::Instrument(id),
                reason: RejectReason::UnknownInstrument,
            });
        };
        let inst = &mut self.instruments[s as usize];
        if inst.halted.is_some() {
            inst.halted = None;
            out.push(Event::Resumed { instrument: id });
        }
    }
}
