//! Machine assembly: the PC platform as VirtualBox presents it with the PIIX3 chipset.
//!
//! Port map: PIC 0x20/0xA0/0x4D0, PIT 0x40-0x43 + port B 0x61, i8042 0x60/0x64, port 92,
//! RTC/CMOS 0x70, POST 0x80, COM1 0x3F8 (IRQ 4), debug console 0x402, fw_cfg 0x510, APM
//! control 0xB2, PCI configuration 0xCF8 (+ reset control 0xCF9), PM block at PMBA (0x600).
//! PCI: 00:00.0 i440FX host bridge, 00:01.0 PIIX3 ISA bridge, 00:07.0 PIIX4 PM (ACPI), as
//! in VirtualBox. MMIO: IOAPIC 0xFEC00000, local APICs 0xFEE00000 (per vCPU, in hm).

use crate::boot::{e820, linux};
use crate::engine::{self, EngineChoice};
use crate::serial::{self, Console};
use devices::acpi::{self, AcpiConfig, Piix4Pm};
use devices::fw_cfg::FwCfg;
use devices::i8042::{Port92, I8042};
use devices::pci::{I440fx, PciAddress, PciBus, PciIntxRouter, Piix3Isa};
use devices::pit::Pit;
use devices::post::{DebugCon, PostCode};
use devices::rtc::{self, Rtc};
use devices::uart::Serial;
use hm::cpuid::{CpuidPolicy, ParavirtProvider};
use hm::{ExecutionManager, IrqChip, Start, StopReason};
use iomio::{Bus, SharedDevice};
use parking_lot::Mutex;
use pdm::{IrqLine, IrqSink, TimerQueue, VirtualClock};
use pgm::{GuestMemory, MemoryLayout, PamMode};
use std::io::Write;
use std::sync::Arc;
use sup::{Vcpu, VcpuState};

/// How the machine starts.
pub enum Boot {
    /// Direct kernel boot.
    Kernel {
        /// bzImage.
        kernel: Vec<u8>,
        /// initrd.
        initrd: Option<Vec<u8>>,
        /// Command line.
        cmdline: String,
    },
    /// Firmware (SeaBIOS) at the top of the 4 GiB space.
    Firmware {
        /// The ROM image.
        image: Vec<u8>,
    },
    /// A flat code image loaded at `load_addr`, started with `state` (tiny test guests).
    Raw {
        /// The code.
        image: Vec<u8>,
        /// Where it goes.
        load_addr: u64,
        /// Initial BSP state.
        state: Box<VcpuState>,
    },
}

/// Everything needed to build a VM.
pub struct MachineConfig {
    /// RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub cpus: u32,
    /// Engine.
    pub engine: EngineChoice,
    /// Boot method.
    pub boot: Boot,
    /// COM1's host side.
    pub console: Console,
    /// COM2-COM4: (I/O base, ISA IRQ, host side).
    pub extra_serial: Vec<(u16, u32, Console)>,
    /// Where port 0x402 output goes (None: discarded).
    pub debugcon: Option<Box<dyn Write + Send>>,
    /// RTC in UTC (VirtualBox RTCUseUTC) instead of host local time.
    pub rtc_utc: bool,
    /// Paravirtualisation provider.
    pub paravirt: ParavirtProvider,
    /// A port whose write powers the VM off (like QEMU's isa-debug-exit); for tests.
    pub exit_port: Option<u16>,
    /// Storage controllers and their disks.
    pub storage: crate::wiring_storage::Config,
    /// Graphics adapter and remote display.
    pub display: crate::wiring_display::Config,
    /// VMMDev and the Guest Additions services.
    pub guest_additions: crate::wiring_guest_additions::Config,
}

/// What a wiring module gets to plug devices into the machine.
pub struct WiringContext<'a> {
    /// The PCI bus (add functions here).
    pub pci: &'a mut PciBus,
    /// PCI INTx lines: `intx.intx_line(slot, pin)`.
    pub intx: &'a Arc<PciIntxRouter>,
    /// Port-I/O bus.
    pub pio: &'a Arc<Bus>,
    /// MMIO bus.
    pub mmio: &'a Arc<Bus>,
    /// Guest memory.
    pub memory: &'a Arc<GuestMemory>,
    /// ISA interrupt lines by GSI.
    pub irq: &'a Arc<dyn IrqSink>,
    /// The APIC bus, where PCI functions send their MSI messages.
    pub apic: &'a Arc<dyn pdm::ApicBus>,
    /// The virtual clock.
    pub clock: &'a Arc<VirtualClock>,
    /// Timers.
    pub timers: &'a Arc<TimerQueue>,
    /// The execution manager (stop the VM, kick vCPUs).
    pub exec: &'a Arc<ExecutionManager>,
    /// fw_cfg files for the firmware (e.g. "bootorder", option ROMs); ignored on direct boot.
    pub fw_files: &'a mut Vec<(String, Vec<u8>)>,
    /// The i8042 keyboard controller (host keyboard and mouse input goes here).
    pub keyboard: &'a Arc<Mutex<I8042>>,
    /// Run once the VM has stopped and its vCPU threads have ended (flush and close disks).
    pub on_power_off: &'a mut Vec<PowerOffHook>,
    /// The PIIX4 PM registers (the ACPI power button: `controlvm acpipowerbutton`).
    pub acpi_pm: &'a Arc<Mutex<acpi::PmRegisters>>,
}

/// Work a device leaves for power-off (see [`WiringContext::on_power_off`]).
pub type PowerOffHook = Box<dyn FnOnce() + Send>;

impl MachineConfig {
    /// Defaults for `boot`: 512 MiB, one vCPU, auto engine, console on stdio.
    pub fn new(boot: Boot) -> Self {
        MachineConfig {
            memory_mib: 512,
            cpus: 1,
            engine: EngineChoice::Auto,
            boot,
            console: Console::Stdio,
            extra_serial: Vec::new(),
            debugcon: None,
            rtc_utc: false,
            paravirt: ParavirtProvider::Minimal,
            exit_port: None,
            storage: Default::default(),
            display: Default::default(),
            guest_additions: Default::default(),
        }
    }
}

/// Errors building or running a machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Engine selection.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    /// Hypervisor backend.
    #[error(transparent)]
    Sup(#[from] sup::SupError),
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] pgm::PgmError),
    /// Kernel loading.
    #[error(transparent)]
    Linux(#[from] linux::LinuxBootError),
    /// Device wiring.
    #[error("device setup: {0}")]
    Devices(String),
    /// Firmware image.
    #[error("firmware: {0}")]
    Firmware(String),
    /// Threads.
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
}

fn dev_err(e: impl std::fmt::Display) -> MachineError {
    MachineError::Devices(e.to_string())
}

/// A built machine, ready to run.
pub struct Machine {
    memory: Arc<GuestMemory>,
    exec: Arc<ExecutionManager>,
    timers: Arc<TimerQueue>,
    vcpus: Vec<Box<dyn Vcpu>>,
    bsp: VcpuState,
    serial_inputs: Vec<(serial::Input, serial::Peer, Arc<Mutex<Serial>>)>,
    engine_reason: String,
    power_off: Vec<PowerOffHook>,
}

/// A handle to stop a running machine from another thread (Ctrl-C).
#[derive(Clone)]
pub struct StopHandle(Arc<ExecutionManager>);

impl StopHandle {
    /// Power the VM off.
    pub fn power_off(&self) {
        self.0.request_stop(StopReason::PowerOff);
    }
}

/// A device the guest writes to power the VM off (test guests).
struct ExitPort(Arc<ExecutionManager>);

impl iomio::BusDevice for ExitPort {
    fn read(&mut self, _addr: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _addr: u64, _offset: u64, _data: &[u8]) {
        self.0.request_stop(StopReason::PowerOff);
    }
}

fn shared<T: iomio::BusDevice + 'static>(d: T) -> SharedDevice {
    Arc::new(Mutex::new(d))
}

/// Where the ACPI tables go for a boot without firmware: the last 64 KiB below the hole.
const ACPI_AREA: u64 = 0x1_0000;
/// Where the RSDP goes for a boot without firmware (OSes scan 0xE0000-0xFFFFF).
const RSDP_ADDR: u64 = 0xe_0000;

impl Machine {
    /// Build the machine `cfg` describes.
    pub fn build(cfg: MachineConfig) -> Result<Machine, MachineError> {
        let engine = engine::choose(cfg.engine)?;
        let ram = cfg.memory_mib.checked_mul(1 << 20).ok_or_else(|| {
            MachineError::Memory(pgm::PgmError::Layout("memory size overflows".into()))
        })?;
        let mut layout = MemoryLayout::pc(ram)?;
        if let Boot::Firmware { image } = &cfg.boot {
            crate::firmware::check_image(image).map_err(MachineError::Firmware)?;
            layout = layout.with_firmware(image.len() as u64)?;
        }
        let memory = Arc::new(GuestMemory::new(layout)?);
        let clock = Arc::new(VirtualClock::new());
        let timers = TimerQueue::new(clock.clone());
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());

        // Interrupt fabric and the execution manager.
        let chip = IrqChip::new(cfg.cpus, clock.clone(), &timers);
        let exec = ExecutionManager::new(
            memory.clone(),
            pio.clone(),
            mmio.clone(),
            chip.clone(),
            cfg.cpus,
        );
        chip.attach(&exec);
        let sink: Arc<dyn IrqSink> = chip.clone();
        let apic: Arc<dyn pdm::ApicBus> = chip.clone();
        let line = |gsi: u32| IrqLine::new(sink.clone(), gsi);

        let pic = chip.pic().clone();
        for base in [0x20u64, 0xa0, 0x4d0] {
            pio.insert(base, 2, "pic", pic.clone()).map_err(dev_err)?;
        }
        mmio.insert(0xfec0_0000, 0x1000, "ioapic", chip.ioapic().mmio_device())
            .map_err(dev_err)?;

        let pit = Pit::new_shared(clock.clone(), line(0), &timers);
        pio.insert(0x40, 4, "pit", pit.clone()).map_err(dev_err)?;
        pio.insert(0x61, 1, "port-b", pit).map_err(dev_err)?;

        let rtc = Rtc::new_shared(
            clock.clone(),
            line(8),
            &timers,
            rtc::host_seconds_for(cfg.rtc_utc),
        );
        {
            let mut r = rtc.lock();
            let l = memory.layout();
            r.set_memory_size(l.ram_below_4g(), l.ram_above_4g());
            r.set_cpu_count(cfg.cpus);
            r.update_checksum();
        }
        pio.insert(0x70, 2, "rtc", rtc).map_err(dev_err)?;

        let mut serial_inputs = Vec::new();
        for (base, irq, console) in
            std::iter::once((0x3f8u16, 4u32, cfg.console)).chain(cfg.extra_serial)
        {
            let (out, input, peer) = serial::open(console).map_err(dev_err)?;
            let uart = Arc::new(Mutex::new(Serial::new(line(irq), out)));
            pio.insert(u64::from(base), 8, "uart", uart.clone())
                .map_err(dev_err)?;
            serial_inputs.push((input, peer, uart));
        }
        let e = exec.clone();
        let reset: devices::i8042::ResetCallback =
            Arc::new(move || e.request_stop(StopReason::Reset));
        let mut kbc = I8042::new(line(1), line(12));
        kbc.set_reset_callback(reset.clone());
        let mut p92 = Port92::new(kbc.a20_gate());
        p92.set_reset_callback(reset.clone());
        let kbc = Arc::new(Mutex::new(kbc));
        pio.insert(0x60, 1, "i8042", kbc.clone()).map_err(dev_err)?;
        pio.insert(0x64, 1, "i8042", kbc.clone()).map_err(dev_err)?;
        pio.insert(0x92, 1, "port92", shared(p92))
            .map_err(dev_err)?;

        pio.insert(0x80, 1, "post", shared(PostCode::new()))
            .map_err(dev_err)?;
        let dbg = match cfg.debugcon {
            Some(w) => DebugCon::new(w),
            None => DebugCon::discard(),
        };
        pio.insert(0x402, 1, "debugcon", shared(dbg))
            .map_err(dev_err)?;
        if let Some(port) = cfg.exit_port {
            pio.insert(
                u64::from(port),
                1,
                "test-exit",
                shared(ExitPort(exec.clone())),
            )
            .map_err(dev_err)?;
        }

        // PCI.
        let mut pci = PciBus::new(pio.clone(), mmio.clone());
        let e = exec.clone();
        pci.set_reset_callback(Arc::new(move || e.request_stop(StopReason::Reset)));
        let router = PciIntxRouter::new(sink.clone());
        pci.add_function(
            PciAddress::new(0, 0),
            Arc::new(Mutex::new(I440fx::new(memory.clone()))),
        )
        .map_err(dev_err)?;
        let mut isa = Piix3Isa::new(router.clone(), true);
        let pirqs = AcpiConfig::default().pirq_irqs;
        if !matches!(cfg.boot, Boot::Firmware { .. }) {
            // No firmware to program the PIRQ routes: set what SeaBIOS would.
            isa.set_pirq_routes(pirqs);
        }
        pci.add_function(PciAddress::new(1, 0), Arc::new(Mutex::new(isa)))
            .map_err(dev_err)?;
        let pm = Piix4Pm::new(clock.clone(), line(9), Some(&timers), acpi::DEFAULT_PM_BASE);
        let acpi_pm = pm.registers();
        let e = exec.clone();
        pm.set_poweroff_callback(Arc::new(move || e.request_stop(StopReason::PowerOff)));
        pio.insert(u64::from(acpi::APM_CNT_PORT), 2, "apm", pm.registers())
            .map_err(dev_err)?;
        pci.add_function(PciAddress::new(7, 0), Arc::new(Mutex::new(pm)))
            .map_err(dev_err)?;
        let mut fw_files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut power_off: Vec<PowerOffHook> = Vec::new();
        {
            let mut ctx = WiringContext {
                pci: &mut pci,
                intx: &router,
                pio: &pio,
                mmio: &mmio,
                memory: &memory,
                irq: &sink,
                apic: &apic,
                clock: &clock,
                timers: &timers,
                exec: &exec,
                fw_files: &mut fw_files,
                keyboard: &kbc,
                on_power_off: &mut power_off,
                acpi_pm: &acpi_pm,
            };
            crate::wiring_storage::attach(&cfg.storage, &mut ctx)?;
            crate::wiring_display::attach(&cfg.display, &mut ctx)?;
            crate::wiring_guest_additions::attach(&cfg.guest_additions, &mut ctx)?;
        }
        pci.attach().map_err(dev_err)?;

        let acpi_cfg = AcpiConfig {
            cpus: cfg.cpus as u8,
            ioapic_id: cfg.cpus as u8,
            pirq_irqs: pirqs,
            ..AcpiConfig::default()
        };
        let tables = acpi::build_tables(&acpi_cfg);

        // Boot.
        let l = memory.layout();
        let bsp = match cfg.boot {
            Boot::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                // No firmware: the BIOS area is plain RAM, ACPI tables are placed here.
                memory.set_pam(0xc_0000, 0x4_0000, PamMode::ReadWrite)?;
                let acpi_at = l.ram_below_4g() - ACPI_AREA;
                tables
                    .write_to_guest(&memory, RSDP_ADDR, acpi_at)
                    .map_err(dev_err)?;
                let map = e820::pc_map(&l, Some((acpi_at, ACPI_AREA)));
                let unpack_cache = crate::boot::unpack_cache::UnpackCache::from_env();
                linux::load(
                    &memory,
                    &linux::LinuxImage {
                        kernel: &kernel,
                        initrd: initrd.as_deref(),
                        cmdline: &cmdline,
                        e820: &map,
                        rsdp: Some(RSDP_ADDR),
                        // NOVABOX_GUEST_DECOMPRESS=1: the guest runs the bzImage
                        // decompressor and inflates the initramfs itself, as after a boot
                        // loader (for comparisons and diagnosis).
                        unpack_on_host: std::env::var_os("NOVABOX_GUEST_DECOMPRESS").is_none(),
                        unpack_cache: unpack_cache.as_ref(),
                    },
                )?
            }
            Boot::Firmware { image } => {
                let top = 0x1_0000_0000 - image.len() as u64;
                memory.load_image(top, &image)?;
                let mut fw = FwCfg::new(memory.clone());
                fw.add_item(
                    devices::fw_cfg::FW_CFG_NB_CPUS,
                    (cfg.cpus as u16).to_le_bytes().to_vec(),
                )
                .map_err(dev_err)?;
                fw.add_item(
                    devices::fw_cfg::FW_CFG_MAX_CPUS,
                    (cfg.cpus as u16).to_le_bytes().to_vec(),
                )
                .map_err(dev_err)?;
                let mut e820_ram = Vec::new();
                e820_ram.extend(
                    e820::E820Entry {
                        addr: 0,
                        size: l.ram_below_4g(),
                        kind: e820::E820_RAM,
                    }
                    .to_bytes(),
                );
                if l.ram_above_4g() > 0 {
                    e820_ram.extend(
                        e820::E820Entry {
                            addr: 1 << 32,
                            size: l.ram_above_4g(),
                            kind: e820::E820_RAM,
                        }
                        .to_bytes(),
                    );
                }
                fw.add_file("etc/e820", e820_ram).map_err(dev_err)?;
                for (name, data) in tables.fw_cfg_files() {
                    fw.add_file(&name, data).map_err(dev_err)?;
                }
                if !fw_files.iter().any(|(n, _)| n == "bootorder") {
                    fw.add_file("bootorder", Vec::new()).map_err(dev_err)?;
                }
                for (name, data) in fw_files {
                    fw.add_file(&name, data).map_err(dev_err)?;
                }
                let fw = Arc::new(Mutex::new(fw));
                pio.insert(0x510, devices::fw_cfg::FW_CFG_PORTS, "fw_cfg", fw)
                    .map_err(dev_err)?;
                VcpuState::reset()
            }
            Boot::Raw {
                image,
                load_addr,
                state,
            } => {
                memory.set_pam(0xc_0000, 0x4_0000, PamMode::ReadWrite)?;
                memory.load_image(load_addr, &image)?;
                *state
            }
        };

        // vCPUs.
        let vm = engine.hypervisor.create_vm(memory.clone())?;
        exec.set_vm(vm.clone());
        let policy = CpuidPolicy {
            cpu_count: cfg.cpus,
            provider: cfg.paravirt,
            tsc_khz: engine.tsc_khz,
            apic_khz: 1_000_000,
        };
        let mut vcpus = Vec::new();
        for id in 0..cfg.cpus {
            let mut v = vm.create_vcpu(id)?;
            v.set_cpuid(&hm::cpuid::guest_table(&engine.base_cpuid, id, &policy))?;
            vcpus.push(v);
        }
        tracing::info!(engine = %engine.reason, cpus = cfg.cpus, memory_mib = cfg.memory_mib, "machine built");
        Ok(Machine {
            memory,
            exec,
            timers,
            vcpus,
            bsp,
            serial_inputs,
            engine_reason: engine.reason,
            power_off,
        })
    }

    /// Guest memory (tests inspect it after a run).
    pub fn memory(&self) -> &Arc<GuestMemory> {
        &self.memory
    }

    /// Which engine runs the vCPUs and why.
    pub fn engine_reason(&self) -> &str {
        &self.engine_reason
    }

    /// A handle to stop the machine.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.exec.clone())
    }

    /// The final state of each vCPU after [`Machine::run`].
    pub fn final_states(&self) -> Vec<Option<VcpuState>> {
        self.exec.final_states()
    }

    /// Run until the VM stops. This thread becomes the event thread (timers).
    pub fn run(&mut self) -> Result<StopReason, MachineError> {
        let mut threads = Vec::new();
        for (i, v) in std::mem::take(&mut self.vcpus).into_iter().enumerate() {
            let start = if i == 0 {
                Start::Now(Box::new(self.bsp))
            } else {
                Start::WaitForSipi
            };
            threads.push(self.exec.spawn(v, start)?);
        }
        for (input, peer, uart) in std::mem::take(&mut self.serial_inputs) {
            let exec = self.exec.clone();
            serial::spawn_input(input, peer, uart, Arc::new(move || exec.stopping()))?;
        }
        let reason = loop {
            if let Some(r) = self.exec.wait_timeout(std::time::Duration::ZERO) {
                break r;
            }
            self.timers.wait(std::time::Duration::from_millis(20));
            self.timers.run_due();
        };
        for t in threads {
            let _ = t.join();
        }
        for hook in std::mem::take(&mut self.power_off) {
            hook();
        }
        Ok(reason)
    }
}

/// Build and run a machine until it stops.
pub fn run_machine(cfg: MachineConfig) -> Result<StopReason, MachineError> {
    let mut m = Machine::build(cfg)?;
    m.run()
}
