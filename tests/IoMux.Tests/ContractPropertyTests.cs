using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using CsCheck;
using IoMux.Conformance;
using IoMux.Interop;
using Microsoft.Win32.SafeHandles;

namespace IoMux.Tests;

/// <summary>
/// Differential, property-based tests of the contract: CsCheck generates sequences of operations (register with any
/// interest and mode, by number or by SafeHandle, modify, deregister, peer writes, partial reads and drains through
/// the registration's helpers, peer shutdown or close, send buffers filled to would-block and drained by the peer,
/// resets, a registered handle closed and its number reused, wakes from another thread, waits), runs each against
/// every backend and model profile, and an executable reference model of docs/SEMANTICS.md
/// (<see cref="ContractModel"/>) predicts every wait: what each registration must report, what it may report (the
/// allowances D and E), what it must not. A wait that expects nothing has a small non-zero timeout, and when it
/// reports nothing it must have slept: its timeout elapsed and it made at most <see cref="MaxKernelWaitsPerQuietWait"/>
/// kernel waits (a busy loop makes hundreds). A mismatch shrinks to a minimal sequence (printed with its seed) to be
/// kept as a named scenario. CI runs 300 sequences per backend (a random seed each run, printed on failure);
/// <c>IOMUX_PROPERTY_ITERATIONS</c>, <c>IOMUX_PROPERTY_SECONDS</c> (per backend, up to 240: the test's
/// <c>CancelAfter</c> is 300 s) and <c>IOMUX_PROPERTY_SEED</c> run longer campaigns or replay one.
/// </summary>
[TestFixtureSource(nameof(Backends))]
public sealed partial class ContractPropertyTests(BackendProvider backend)
{
    public static IEnumerable<TestFixtureData> Backends =>
        Models.ModelTargets.WithNative.Select(t => new TestFixtureData(t).SetArgDisplayNames(t.Name));

    private static long Iterations => long.TryParse(Environment.GetEnvironmentVariable("IOMUX_PROPERTY_ITERATIONS"), out var n) ? n : 300;

    /// <summary>A campaign by time instead of count (seconds per backend), for long runs.</summary>
    private static int Seconds => int.TryParse(Environment.GetEnvironmentVariable("IOMUX_PROPERTY_SECONDS"), out var s) ? s : -1;

    /// <summary>The timeout of a wait the model expects nothing from: long enough that a busy loop shows (hundreds
    /// of kernel waits), short enough that 300 sequences stay within seconds.</summary>
    internal static readonly TimeSpan QuietTimeout = TimeSpan.FromMilliseconds(1);

    /// <summary>Kernel waits a quiet wait may make: one sleep, one re-wait after a wake-channel write that raced with
    /// the previous wait (a spurious wake, dropped by the loop), one after a kernel that returned before the deadline
    /// (rounding), one for a stale event of a closed registration. SEMANTICS T1 allows 2 for one wait, N1 8 for three.</summary>
    internal const int MaxKernelWaitsPerQuietWait = 4;

    [OneTimeSetUp]
    public void Supported()
    {
        if (backend.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
    }

    [Test, CancelAfter(300_000)]
    public void EveryWaitMatchesTheReferenceModel(CancellationToken cancellation)
    {
        var seed = Environment.GetEnvironmentVariable("IOMUX_PROPERTY_SEED");
        long sequences = 0, operations = 0;
        var stats = new Stats();
        var clock = Stopwatch.StartNew();
        Generators.Sequence.Sample(ops =>
        {
            // Every wait in a sequence is bounded (at most 5 s), so the token is seen between sequences; a sequence
            // skipped here is reported below, never counted as passed.
            if (cancellation.IsCancellationRequested)
                return;
            using var run = new Run(backend, stats);
            run.Execute(ops);
            sequences++;
            operations += ops.Length;
        }, seed: seed, iter: Seconds > 0 ? -1 : Iterations, time: Seconds, threads: 1, print: Generators.Print);
        TestContext.Out.WriteLine($"{backend.Name}: {sequences} sequences, {operations} operations, {stats.Waits} waits checked against the model " +
            $"({stats.QuietWaits} quiet waits checked for sleeping, at most {stats.MaxQuietKernelWaits} kernel waits in one; {stats.Wakes} cross-thread wakes; " +
            $"{stats.Fills} send buffers filled, {stats.Resets} resets, {stats.Closes} registered handles closed) in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.That(cancellation.IsCancellationRequested, Is.False,
            $"cancelled after {sequences} sequences ({clock.Elapsed.TotalSeconds:F0} s): a sequence hung or the campaign outran CancelAfter");
    }

    /// <summary>A shrunk mismatch becomes a named sequence here (and a scenario in the conformance suite).</summary>
    [TestCaseSource(nameof(Regressions))]
    public void Regression(string name, Op[] ops)
    {
        using var run = new Run(backend, new Stats());
        run.Execute(ops);
    }

    public static IEnumerable<TestCaseData> Regressions()
    {
        // An edge registration reported, partly read (no would-block), more data: native edge reports again,
        // the emulation does not (allowance E); a drain to would-block then re-arms everywhere.
        yield return new TestCaseData("edge partial read then new data", new Op[]
        {
            new(OpKind.Register, 0, Interest.Readable, TriggerMode.Edge), new(OpKind.PeerWrite, 0, Amount: 10), new(OpKind.Wait),
            new(OpKind.ReadSome, 0, Amount: 3), new(OpKind.PeerWrite, 0, Amount: 5), new(OpKind.Wait),
            new(OpKind.Drain, 0), new(OpKind.PeerWrite, 0, Amount: 1), new(OpKind.Wait),
        }).SetArgDisplayNames("edge-partial-read");
        // A pipe whose writer closed with bytes buffered: Hangup and ReadHangup now or after the drain (allowance D).
        yield return new TestCaseData("pipe hangup behind data", new Op[]
        {
            new(OpKind.Register, 1, Interest.Readable, TriggerMode.Level), new(OpKind.PeerWrite, 1, Amount: 7), new(OpKind.PeerShutdown, 1),
            new(OpKind.Wait), new(OpKind.Drain, 1), new(OpKind.Wait), new(OpKind.Modify, 1, Interest.None, TriggerMode.Level), new(OpKind.Wait),
        }).SetArgDisplayNames("pipe-hangup-behind-data");
        // Oneshot across both directions of a socket, re-armed by a modify to level.
        yield return new TestCaseData("oneshot then level", new Op[]
        {
            new(OpKind.Register, 2, Interest.Readable | Interest.Writable, TriggerMode.Oneshot), new(OpKind.Wait),
            new(OpKind.PeerWrite, 2, Amount: 4), new(OpKind.Wait), new(OpKind.Modify, 2, Interest.Readable, TriggerMode.Level), new(OpKind.Wait), new(OpKind.Wait),
        }).SetArgDisplayNames("oneshot-then-level");
        // X3c on both socket kinds: edge Writable reported, the buffer filled to would-block (quiet while full), the
        // peer drains: Writable again.
        foreach (var target in new[] { 0, 2 })
            yield return new TestCaseData("writable edge after a full send buffer", new Op[]
            {
                new(OpKind.Register, target, Interest.Writable, TriggerMode.Edge), new(OpKind.Wait), new(OpKind.FillSend, target), new(OpKind.Wait),
                new(OpKind.PeerDrain, target), new(OpKind.Wait), new(OpKind.Wait),
            }).SetArgDisplayNames(target == 0 ? "writable-edge-unix" : "writable-edge-tcp");
        // H3 with data in front of the reset: the bytes, then ECONNRESET once, then end of stream.
        foreach (var target in new[] { 0, 2 })
            yield return new TestCaseData("reset behind data", new Op[]
            {
                new(OpKind.Register, target, Interest.Readable | Interest.Writable, TriggerMode.Level), new(OpKind.PeerWrite, target, Amount: 5),
                new(OpKind.PeerReset, target), new(OpKind.Wait), new(OpKind.Drain, target), new(OpKind.Wait), new(OpKind.Drain, target), new(OpKind.Wait),
            }).SetArgDisplayNames(target == 0 ? "reset-unix" : "reset-tcp");
        // F1b + F9: a handle closed while registered, its number reused by the next object, registered again.
        yield return new TestCaseData("handle closed while registered, number reused", new Op[]
        {
            new(OpKind.Register, 0, Interest.Readable | Interest.Writable, TriggerMode.Level, ViaHandle: true), new(OpKind.PeerWrite, 0, Amount: 3),
            new(OpKind.CloseRegistered, 0), new(OpKind.Wait), new(OpKind.Register, 0, Interest.Readable, TriggerMode.Edge, ViaHandle: true),
            new(OpKind.PeerWrite, 0, Amount: 2), new(OpKind.Wait), new(OpKind.Deregister, 0), new(OpKind.Wait),
        }).SetArgDisplayNames("closed-handle-reused");
        // A closed registration's number registered again while another edge registration holds unread data: the
        // retirement of the closed one must not re-fire the other's edge (the kqueue model rebuilt its set here).
        yield return new TestCaseData("number reuse leaves other edges alone", new Op[]
        {
            new(OpKind.Register, 2, Interest.Readable, TriggerMode.Edge), new(OpKind.PeerWrite, 2, Amount: 5), new(OpKind.Wait),
            new(OpKind.Register, 1, Interest.Readable, TriggerMode.Level, ViaHandle: true), new(OpKind.CloseRegistered, 1),
            new(OpKind.Register, 1, Interest.Readable, TriggerMode.Level), new(OpKind.Wait),
        }).SetArgDisplayNames("reuse-keeps-edges");
        // W1 and W2: a wake sent before the wait starts, and one to a sleeping waiter.
        yield return new TestCaseData("wakes from another thread", new Op[]
        {
            new(OpKind.WakeFromThread, Amount: 0), new(OpKind.Wait), new(OpKind.WakeFromThread, Amount: 2), new(OpKind.Wait),
        }).SetArgDisplayNames("cross-thread-wakes");
    }

    public enum OpKind { Register, Modify, Deregister, PeerWrite, ReadSome, Drain, PeerShutdown, Wait, FillSend, PeerDrain, PeerReset, CloseRegistered, WakeFromThread }

    /// <summary>One step: an operation on object <paramref name="Target"/> (0: AF_UNIX pair, 1: pipe, 2: TCP pair).
    /// <paramref name="ViaHandle"/>: register through a SafeHandle that owns the descriptor (else the number).
    /// For <see cref="OpKind.WakeFromThread"/>, <paramref name="Amount"/> is the waker's delay in milliseconds.</summary>
    public readonly record struct Op(OpKind Kind, int Target = 0, Interest Interest = Interest.Readable, TriggerMode Mode = TriggerMode.Level, int Amount = 1, bool ViaHandle = false)
    {
        public override string ToString() => Kind switch
        {
            OpKind.Register or OpKind.Modify => $"{Kind}({Name(Target)}, {Interest}, {Mode}{(ViaHandle ? ", handle" : "")})",
            OpKind.PeerWrite or OpKind.ReadSome => $"{Kind}({Name(Target)}, {Amount})",
            OpKind.WakeFromThread => $"WakeFromThread({Amount} ms)",
            OpKind.Wait => "Wait",
            _ => $"{Kind}({Name(Target)})",
        };

        private static string Name(int target) => target switch { 0 => "unix", 1 => "pipe", _ => "tcp" };
    }

    private static class Generators
    {
        private static readonly Gen<Interest> SocketInterest = Pick(Interest.None, Interest.Readable, Interest.Writable, Interest.Readable | Interest.Writable);
        private static readonly Gen<Interest> PipeInterest = Pick(Interest.None, Interest.Readable);
        private static readonly Gen<TriggerMode> Mode = Pick(TriggerMode.Level, TriggerMode.Edge, TriggerMode.Oneshot);

        private static Gen<T> Pick<T>(params T[] values) => Gen.Int[0, values.Length - 1].Select(i => values[i]);

        private static readonly Gen<Op> Step =
            Gen.Int[0, 2].SelectMany(target =>
                Gen.Frequency(
                    (3, Gen.Select(target == 1 ? PipeInterest : SocketInterest, Mode, Gen.Bool, (i, m, h) => new Op(OpKind.Register, target, i, m, ViaHandle: h))),
                    (2, Gen.Select(target == 1 ? PipeInterest : SocketInterest, Mode, (i, m) => new Op(OpKind.Modify, target, i, m))),
                    (1, Gen.Const(new Op(OpKind.Deregister, target))),
                    (4, Gen.Int[1, 2000].Select(n => new Op(OpKind.PeerWrite, target, Amount: n))),
                    (3, Gen.Int[1, 300].Select(n => new Op(OpKind.ReadSome, target, Amount: n))),
                    (2, Gen.Const(new Op(OpKind.Drain, target))),
                    (1, Gen.Const(new Op(OpKind.PeerShutdown, target))),
                    // The states issue 19 found missing: a pipe has no send side and no reset, so those map to waits.
                    (2, Gen.Const(new Op(target == 1 ? OpKind.Wait : OpKind.FillSend, target))),
                    (2, Gen.Const(new Op(target == 1 ? OpKind.Wait : OpKind.PeerDrain, target))),
                    (1, Gen.Const(new Op(target == 1 ? OpKind.Wait : OpKind.PeerReset, target))),
                    (1, Gen.Const(new Op(OpKind.CloseRegistered, target))),
                    (1, Gen.Int[0, 2].Select(ms => new Op(OpKind.WakeFromThread, Amount: ms))),
                    (6, Gen.Const(new Op(OpKind.Wait, target)))));

        public static readonly Gen<Op[]> Sequence = Step.Array[1, 30];

        public static string Print(Op[] ops) => string.Join("; ", ops);
    }

    /// <summary>What the socket's own send side allows: room (a write completes), no room (a write hits
    /// would-block and nothing frees room until the peer reads), or unknown (TCP after a fill: acknowledgements of
    /// data already sent may free room at any moment, so Writable may or may not be reported).</summary>
    private enum SendRoom { Room, Full, Unknown }

    /// <summary>What docs/SEMANTICS.md says one registered object must, may and must not report.</summary>
    private sealed class ContractModel
    {
        public bool IsPipe, IsUnix, Registered, Fired;
        public long Buffered;
        public bool PeerShut;
        // The peer reset the connection (TCP RST after SO_LINGER 0; AF_UNIX close with unread data): reads return
        // the buffered bytes, then ECONNRESET once (ResetPending), then end of stream.
        public bool Reset, ResetPending;
        public SendRoom Send;
        // Bytes this side wrote that the peer has not read.
        public long Outstanding;
        public Interest Interest;
        public TriggerMode Mode;
        public ulong Token;
        // Edge mode, per direction (Readable, Writable): an event is owed (must come); the direction is armed on
        // every backend (registered, modified, or re-armed by would-block since its last report); readiness arrived
        // since the last report (native edge re-fires on it: allowance E).
        public Interest Owed, Armed, ArrivedSinceReport;

        private bool ReadReady => Buffered > 0 || PeerShut;
        private bool WriteReady => !IsPipe && Send == SendRoom.Room;
        private bool WriteMaybeReady => !IsPipe && Send != SendRoom.Full;

        private Interest Ready => (ReadReady ? Interest.Readable : 0) | (WriteReady ? Interest.Writable : 0);
        private Interest MaybeReady => Ready | (WriteMaybeReady ? Interest.Writable : 0);

        public void OnRegisteredOrModified(Interest interest, TriggerMode mode, ulong token)
        {
            Interest = interest & (Interest.Readable | Interest.Writable);
            Mode = mode;
            Token = token;
            Registered = true;
            Fired = false;
            Armed = Interest;
            Owed = Interest & Ready; // an edge registration reports what is ready when it is made
            ArrivedSinceReport = Interest & MaybeReady;
        }

        public void OnArrival(Interest directions)
        {
            ArrivedSinceReport |= directions & Interest;
            Owed |= directions & Armed & Interest;
        }

        public void OnWouldBlock(Interest directions) => Armed |= directions & Interest;

        /// <summary>(must report, may report) for the next wait.</summary>
        public (Readiness Required, Readiness Allowed) Predict()
        {
            if (!Registered || Interest == Interest.None)
                return (0, 0);
            var ready = Ready & Interest;
            var maybe = MaybeReady & Interest;
            var hangupFlags = Readiness.None;
            if (PeerShut && (Interest & Interest.Readable) != 0)
                hangupFlags |= Readiness.ReadHangup | (IsPipe ? Readiness.Hangup : 0);
            // A reset (SEMANTICS H3): Error, Hangup and ReadHangup allowed, none required: poll-derived and select
            // derive no ReadHangup once getpeername fails on the closed socket, and epoll asks EPOLLRDHUP for readers
            // only. Rule 1 reports Error and Hangup whatever the interest. Error only while the error is pending:
            // once a read returned ECONNRESET the socket has no error left to announce (a demanding user would take
            // a later Error for a second failure). ReadHangup only for a reader (rule 3: always with Readable).
            var resetFlags = Reset
                ? (ResetPending ? Readiness.Error : 0) | Readiness.Hangup | ((Interest & Interest.Readable) != 0 ? Readiness.ReadHangup : 0)
                : Readiness.None;
            var allowed = (Readiness)maybe | hangupFlags | resetFlags;
            switch (Mode)
            {
                case TriggerMode.Level:
                {
                    var required = (Readiness)ready;
                    // Allowance D: a derived hangup shows once the data is drained; with nothing buffered it must show
                    // (not after a reset: see resetFlags).
                    if (Buffered == 0 && !Reset)
                        required |= hangupFlags;
                    return (required, allowed);
                }
                case TriggerMode.Oneshot:
                    return Fired ? (0, 0) : ((Readiness)ready, allowed);
                default:
                {
                    var required = (Readiness)(Owed & Ready);
                    // epoll reports the whole current mask with any edge, so a ready direction may ride along
                    // with another's event (allowance E); a quiet registration must stay quiet (IsQuietEdge).
                    return (required, allowed);
                }
            }
        }

        public void OnReported(Readiness readiness)
        {
            if (Mode == TriggerMode.Oneshot)
                Fired = true;
            if (Mode != TriggerMode.Edge)
                return;
            var directions = (Interest)(readiness & (Readiness.Readable | Readiness.Writable));
            Owed &= ~directions;
            Armed &= ~directions;
            ArrivedSinceReport &= ~directions;
        }

        /// <summary>An edge report of a direction that was neither re-armed nor given new readiness since its last
        /// report. TCP's send room after a fill is unknown: acknowledgements free room without any step of ours, and
        /// native edge mode reports that as a new Writable edge (allowance E).</summary>
        public bool IsQuietEdge(Readiness readiness)
        {
            var spontaneous = Send == SendRoom.Unknown ? Interest.Writable : 0;
            return Mode == TriggerMode.Edge &&
                   ((Interest)(readiness & (Readiness.Readable | Readiness.Writable)) & (Armed | ArrivedSinceReport | Owed | spontaneous)) == 0;
        }
    }

    /// <summary>What one fixture's runs checked, for the summary line.</summary>
    private sealed class Stats
    {
        public long Waits, QuietWaits, MaxQuietKernelWaits, Wakes, Fills, Resets, Closes;
    }

    /// <summary>poll(2) for the test's own bounded waits on the peer side (struct pollfd and these bits are the same
    /// on Linux, the BSDs, macOS and illumos). It watches the objects without touching the poller under test.</summary>
    private static unsafe partial class Sys
    {
        public const short PollIn = 0x1, PollOut = 0x4, PollErr = 0x8, PollHup = 0x10;

        [StructLayout(LayoutKind.Sequential)]
        public struct PollFd
        {
            public int Fd;
            public short Events, Revents;
        }

        [LibraryImport("libc", SetLastError = true)]
        private static partial int poll(PollFd* fds, nuint count, int timeoutMs);

        /// <summary>True once <paramref name="fd"/> shows any of <paramref name="events"/> (POLLERR and POLLHUP always
        /// count), false when <paramref name="timeout"/> passes first.</summary>
        public static bool WaitFor(int fd, short events, TimeSpan timeout)
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                int left = (int)Math.Max(0, (timeout - clock.Elapsed).TotalMilliseconds);
                var p = new PollFd { Fd = fd, Events = events };
                int rc = poll(&p, 1, left);
                if (rc > 0 && (p.Revents & (events | PollErr | PollHup)) != 0)
                    return true;
                if (rc < 0 && Errno.Last != Errno.EINTR)
                    throw Errno.Fail("poll");
                if (clock.Elapsed >= timeout)
                    return false;
            }
        }
    }

    /// <summary>One sequence against one backend: three objects, a poller, the model beside them.</summary>
    private sealed unsafe class Run : IDisposable
    {
        /// <summary>The bound of the test's own waits (peer drains, a reset's arrival, the waker thread, a wait that
        /// only a wake ends). Loopback needs microseconds; seconds leave room for a loaded machine.</summary>
        private static readonly TimeSpan Patience = TimeSpan.FromSeconds(5);

        private static readonly byte[] Chunk = new byte[65536];

        private readonly Poller _poller;
        private readonly Stats _stats;
        private readonly int[] _local = new int[3], _peer = new int[3];
        // The SafeHandle that owns _local[t] once a registration went through one (then it closes the descriptor).
        private readonly SafeFileHandle?[] _handles = new SafeFileHandle?[3];
        private readonly bool[] _viaHandle = new bool[3];
        private readonly ContractModel[] _model = new ContractModel[3];
        private readonly Registration?[] _registrations = new Registration?[3];
        // Registrations whose handle was closed while registered: their tokens must never be reported (F1b, F9).
        private readonly List<Registration> _closed = [];
        private readonly PollEvent[] _events = new PollEvent[16];
        private readonly List<string> _log = [];
        private ulong _nextToken = 1;
        // After a cross-thread wake whose wait returned events, the wake may still be pending: the next wait may
        // return 0 at once (rule 12: sticky until a wait consumes it).
        private bool _wakeMayBePending;

        public Run(BackendProvider backend, Stats stats)
        {
            _poller = new Poller(backend.Create());
            _stats = stats;
            for (int t = 0; t < 3; t++)
                Open(t);
        }

        /// <summary>A fresh object for slot <paramref name="t"/> (after a close it usually gets the closed number).</summary>
        private void Open(int t)
        {
            _model[t] = new ContractModel { IsPipe = t == 1, IsUnix = t == 0 };
            int* fds = stackalloc int[2];
            switch (t)
            {
                case 0:
                    if (LibC.socketpair(1, Platform.IsIllumos ? 2 : 1, 0, fds) != 0)
                        throw Errno.Fail("socketpair");
                    (_local[0], _peer[0]) = (fds[0], fds[1]);
                    break;
                case 1:
                    LibC.CreateNonBlockingPipe(out _local[1], out _peer[1]);
                    break;
                default:
                {
                    using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                    // Small buffers (no autotuning) so that a fill reaches would-block after some 30 KiB, not megabytes.
                    listener.ReceiveBufferSize = 8192;
                    listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                    listener.Listen(1);
                    var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { SendBufferSize = 8192 };
                    client.Connect(listener.LocalEndPoint!);
                    var server = listener.Accept();
                    client.NoDelay = server.NoDelay = true;
                    _local[2] = LibC.dup((int)client.Handle);
                    _peer[2] = LibC.dup((int)server.Handle);
                    client.Dispose();
                    server.Dispose();
                    break;
                }
            }
            LibC.SetNonBlockingCloseOnExec(_local[t]);
            LibC.SetNonBlockingCloseOnExec(_peer[t]);
        }

        public void Execute(IEnumerable<Op> ops)
        {
            foreach (var op in ops)
            {
                _log.Add(op.ToString());
                Step(op);
            }
        }

        private void Step(Op op)
        {
            int t = op.Target;
            var m = _model[t];
            switch (op.Kind)
            {
                case OpKind.Register when !m.Registered:
                    if (op.ViaHandle)
                    {
                        _handles[t] ??= new SafeFileHandle((nint)_local[t], ownsHandle: true);
                        _registrations[t] = _poller.Register(_handles[t]!, _nextToken, op.Interest, op.Mode);
                    }
                    else
                    {
                        _registrations[t] = _poller.Register(_local[t], _nextToken, op.Interest, op.Mode);
                    }
                    _viaHandle[t] = op.ViaHandle;
                    m.OnRegisteredOrModified(op.Interest, op.Mode, _nextToken++);
                    break;
                case OpKind.Modify when m.Registered:
                    _registrations[t]!.Modify(op.Interest, op.Mode);
                    m.OnRegisteredOrModified(op.Interest, op.Mode, m.Token);
                    break;
                case OpKind.Deregister:
                    // F1b: a registration whose handle was closed is disposed afterwards without an exception.
                    if (_closed.Count > 0)
                    {
                        _closed[0].Dispose();
                        _closed.RemoveAt(0);
                    }
                    if (m.Registered)
                    {
                        _registrations[t]!.Dispose();
                        _registrations[t] = null;
                        m.Registered = false;
                    }
                    break;
                case OpKind.PeerWrite when !m.PeerShut:
                {
                    var bytes = new byte[op.Amount];
                    fixed (byte* p = bytes)
                    {
                        nint n = LibC.write(_peer[t], p, (nuint)bytes.Length);
                        if (n > 0)
                        {
                            m.Buffered += n;
                            m.OnArrival(Interest.Readable | Interest.Writable);
                        }
                    }
                    break;
                }
                case OpKind.ReadSome:
                    ReadOnce(t, op.Amount);
                    break;
                case OpKind.Drain:
                    for (int i = 0; i < 1000 && ReadOnce(t, 4096) == IoOutcome.Completed; i++)
                    {
                    }
                    break;
                case OpKind.PeerShutdown when !m.PeerShut:
                    if (m.IsPipe)
                    {
                        LibC.close(_peer[t]);
                        _peer[t] = -1;
                    }
                    else
                    {
                        LibC.shutdown(_peer[t], 1); // SHUT_WR: our side reads the buffered bytes, then 0
                    }
                    m.PeerShut = true;
                    m.OnArrival(Interest.Readable | Interest.Writable);
                    break;
                case OpKind.FillSend when !m.IsPipe && !m.Reset:
                    FillSend(t);
                    break;
                case OpKind.PeerDrain when !m.IsPipe && !m.Reset && m.Outstanding > 0:
                    PeerDrain(t);
                    break;
                // After the peer's SHUT_WR a TCP reset leaves EPIPE, not ECONNRESET, as the pending error (Linux
                // tcp_reset in CLOSE_WAIT), which Read throws as a PosixException (rule 5): out of scope here.
                case OpKind.PeerReset when !m.IsPipe && !m.PeerShut:
                    PeerReset(t);
                    break;
                case OpKind.CloseRegistered when m.Registered && _viaHandle[t]:
                    CloseRegistered(t);
                    break;
                case OpKind.WakeFromThread:
                    WakeFromAnotherThread(op.Amount);
                    break;
                case OpKind.Wait:
                    Wait();
                    break;
            }
        }

        private IoOutcome ReadOnce(int t, int amount)
        {
            var m = _model[t];
            var outcome = Transfer(t, new byte[amount], write: false, out int n);
            if (outcome == IoOutcome.Completed)
            {
                Check(n <= m.Buffered, $"read {n} bytes of {m.Buffered} buffered");
                m.Buffered -= n;
            }
            else if (outcome == IoOutcome.WouldBlock)
            {
                Check(m.Buffered == 0 && !m.PeerShut, $"would-block with {m.Buffered} buffered, peer shut {m.PeerShut}");
                m.OnWouldBlock(Interest.Readable);
            }
            else if (outcome == IoOutcome.ConnectionReset)
            {
                Check(m.Buffered == 0 && m.ResetPending, $"ECONNRESET with {m.Buffered} buffered, reset pending {m.ResetPending}");
                m.ResetPending = false;
            }
            else
            {
                Check(m.Buffered == 0 && m.PeerShut && !m.ResetPending, $"end of stream with {m.Buffered} buffered, peer shut {m.PeerShut}, reset pending {m.ResetPending}");
            }
            return outcome;
        }

        /// <summary>One read or write on object <paramref name="t"/>: through the registration's helper when there is one
        /// (so that would-block re-arms edge mode), else on the raw descriptor, with the same outcomes.</summary>
        private IoOutcome Transfer(int t, Span<byte> buffer, bool write, out int n)
        {
            if (_registrations[t] is { } registration)
                return write ? registration.Write(buffer, out n) : registration.Read(buffer, out n);
            fixed (byte* p = buffer)
            {
                nint r = write ? LibC.write(_local[t], p, (nuint)buffer.Length) : LibC.read(_local[t], p, (nuint)buffer.Length);
                int errno = r < 0 ? Errno.Last : 0;
                n = (int)Math.Max(r, 0);
                return r > 0 || (r == 0 && write) ? IoOutcome.Completed
                    : r == 0 ? IoOutcome.EndOfStream
                    : errno == Errno.EAGAIN ? IoOutcome.WouldBlock
                    : errno == Errno.ECONNRESET ? IoOutcome.ConnectionReset
                    : throw new PosixException(write ? "write" : "read", errno);
            }
        }

        /// <summary>Writes until would-block (through the registration's helper when there is one, so edge mode is
        /// re-armed for Writable): the writable transitions SEMANTICS X3c describes.</summary>
        private void FillSend(int t)
        {
            var m = _model[t];
            _stats.Fills++;
            for (int i = 0; i < 10_000; i++)
            {
                var outcome = Transfer(t, Chunk, write: true, out int n);
                if (outcome == IoOutcome.WouldBlock)
                {
                    // An AF_UNIX socket's room comes back only when the peer reads; TCP's also when acknowledgements
                    // of bytes already sent arrive, which may happen at any moment.
                    m.Send = m.IsUnix ? SendRoom.Full : SendRoom.Unknown;
                    m.OnWouldBlock(Interest.Writable);
                    return;
                }
                Check(outcome == IoOutcome.Completed, $"a write to fill the send buffer returned {outcome}");
                m.Outstanding += n;
            }
            Check(false, $"10 000 writes of {Chunk.Length} bytes did not fill the send buffer");
        }

        /// <summary>The peer reads everything this side wrote; then this side has room again (a Writable edge).</summary>
        private void PeerDrain(int t)
        {
            var m = _model[t];
            var clock = Stopwatch.StartNew();
            fixed (byte* p = new byte[65536])
            {
                while (m.Outstanding > 0)
                {
                    nint r = LibC.read(_peer[t], p, 65536);
                    if (r > 0)
                    {
                        m.Outstanding -= r;
                        Check(m.Outstanding >= 0, $"the peer read {-m.Outstanding} bytes more than were written");
                        continue;
                    }
                    Check(r < 0 && Errno.Last == Errno.EAGAIN, $"the peer's read returned {r} with {m.Outstanding} bytes outstanding");
                    Check(Sys.WaitFor(_peer[t], Sys.PollIn, Patience - clock.Elapsed), $"the peer received nothing more for {Patience.TotalSeconds} s with {m.Outstanding} bytes outstanding");
                }
            }
            // TCP frees the room when the acknowledgements arrive: wait for them (poll(2) on the same socket, not the
            // poller under test) so that the model can require Writable from the next wait.
            if (!m.IsUnix)
                Check(Sys.WaitFor(_local[t], Sys.PollOut, Patience), $"no room to write {Patience.TotalSeconds} s after the peer read everything");
            m.Send = SendRoom.Room;
            m.OnArrival(Interest.Writable);
        }

        /// <summary>The peer closes with unread data and SO_LINGER 0: TCP sends an RST, an AF_UNIX socket gets
        /// ECONNRESET (Linux unix_release_sock). SEMANTICS H3.</summary>
        private void PeerReset(int t)
        {
            var m = _model[t];
            _stats.Resets++;
            if (m.Outstanding == 0)
            {
                // Unread data at the peer is what makes an AF_UNIX close a reset (raw write: no edge re-arm).
                byte one = 1;
                if (LibC.write(_local[t], &one, 1) == 1)
                    m.Outstanding++;
            }
            if (!m.IsUnix)
            {
                using var peer = new Socket(new SafeSocketHandle((nint)_peer[t], ownsHandle: false));
                peer.LingerState = new LingerOption(true, 0);
            }
            LibC.close(_peer[t]);
            _peer[t] = -1;
            // Loopback delivers the RST at once, but through softirq processing: wait for it so the model may require
            // Readable from the next wait. POLLERR/POLLHUP only, so buffered data does not end the wait early.
            Check(Sys.WaitFor(_local[t], 0, Patience), $"the reset did not arrive within {Patience.TotalSeconds} s");
            m.PeerShut = m.Reset = m.ResetPending = true;
            m.Outstanding = 0;
            m.Send = SendRoom.Room; // a write fails at once (EPIPE or ECONNRESET): ready, as rule 5 wants
            m.OnArrival(Interest.Readable | Interest.Writable);
        }

        /// <summary>F1b and F9: the SafeHandle of a registration is closed while registered; the close is immediate (no
        /// pin), nothing is reported for the old token from then on, and the slot gets a fresh object that usually
        /// reuses the number.</summary>
        private void CloseRegistered(int t)
        {
            _stats.Closes++;
            var handle = _handles[t]!;
            handle.Dispose();
            Check(handle.IsClosed, "closing a registered SafeHandle did not close it at once (the registration pins it)");
            _closed.Add(_registrations[t]!);
            _registrations[t] = null;
            _handles[t] = null;
            _viaHandle[t] = false;
            if (_peer[t] >= 0)
                LibC.close(_peer[t]);
            Open(t);
        }

        private void Wait()
        {
            var predictions = _model.Select(m => m.Predict()).ToArray();
            bool anyRequired = predictions.Any(p => p.Required != 0);
            var timeout = anyRequired ? TimeSpan.FromMilliseconds(200) : QuietTimeout;
            long kernelWaits = _poller.Counters.KernelWaits;
            var clock = Stopwatch.StartNew();
            int count = _poller.Wait(_events, timeout);
            var elapsed = clock.Elapsed;
            kernelWaits = _poller.Counters.KernelWaits - kernelWaits;
            CheckEvents(count, predictions);
            if (count > 0)
                return;
            // A wait that reported nothing slept: no kernel wait returned early into a loop (rule 13: timeouts never
            // return early), and the loop did not spin (hundreds of kernel waits in 1 ms).
            _stats.QuietWaits++;
            _stats.MaxQuietKernelWaits = Math.Max(_stats.MaxQuietKernelWaits, kernelWaits);
            Check(kernelWaits <= MaxKernelWaitsPerQuietWait,
                $"a wait of {timeout.TotalMilliseconds} ms that reported nothing made {kernelWaits} kernel waits (a busy loop; at most {MaxKernelWaitsPerQuietWait} expected)");
            if (!_wakeMayBePending)
                Check(elapsed >= timeout, $"a wait of {timeout.TotalMilliseconds} ms reported nothing after {elapsed.TotalMilliseconds:F3} ms (returned early, no wake pending)");
            _wakeMayBePending = false; // consumed now, or there was none
        }

        /// <summary>W1/W2 from the generator: another thread wakes the poller (1, 2 or 3 calls, after 0-2 ms) while
        /// this one waits with a long timeout: the wait must end well before it, with the events the model predicts,
        /// and the wakes cost at most one write to the wake channel.</summary>
        private void WakeFromAnotherThread(int delayMs)
        {
            _stats.Wakes++;
            var predictions = _model.Select(m => m.Predict()).ToArray();
            long writes = _poller.Counters.WakeWrites;
            int calls = 1 + delayMs % 3;
            var waker = new Thread(() =>
            {
                if (delayMs > 0)
                    Thread.Sleep(delayMs);
                for (int i = 0; i < calls; i++)
                    _poller.Wake();
            }) { IsBackground = true, Name = "property waker" };
            var clock = Stopwatch.StartNew();
            waker.Start();
            int count = _poller.Wait(_events, Patience);
            var elapsed = clock.Elapsed;
            Check(waker.Join(Patience), $"the waker thread did not finish within {Patience.TotalSeconds} s");
            CheckEvents(count, predictions);
            Check(count > 0 || elapsed < Patience, $"a wake from another thread did not end the wait: it ran its {Patience.TotalSeconds} s timeout");
            long written = _poller.Counters.WakeWrites - writes;
            Check(written <= 1, $"{calls} wakes for one wait wrote the wake channel {written} times (coalescing: at most once)");
            // The wait may have ended on events before the wakes came, or consumed an earlier wake and left these.
            _wakeMayBePending = true;
        }

        private void CheckEvents(int count, (Readiness Required, Readiness Allowed)[] predictions)
        {
            _stats.Waits++;
            var seen = new Dictionary<ulong, Readiness>();
            for (int i = 0; i < count; i++)
            {
                var e = _events[i];
                Check(seen.TryAdd(e.Token, e.Readiness), $"two events for token {e.Token} in one wait");
                int t = Array.FindIndex(_model, m => m.Registered && m.Token == e.Token);
                Check(t >= 0, $"an event for token {e.Token}, which is not registered (stale{(_closed.Any(r => r.Token == e.Token) ? ": its handle was closed" : "")}): {e.Readiness}");
                var (required, allowed) = predictions[t];
                Check((e.Readiness & ~(required | allowed)) == 0, $"object {t}: reported {e.Readiness}, allowed only {required | allowed}");
                Check(!_model[t].IsQuietEdge(e.Readiness), $"object {t}: edge reported {e.Readiness} again without would-block or new readiness");
            }
            for (int t = 0; t < _model.Length; t++)
            {
                var (required, _) = predictions[t];
                if (required == 0)
                    continue;
                var got = _model[t].Registered && seen.TryGetValue(_model[t].Token, out var r) ? r : Readiness.None;
                Check((got & required) == required, $"object {t}: must report {required}, got {got}");
            }
            foreach (var (token, readiness) in seen)
                _model.First(m => m.Registered && m.Token == token).OnReported(readiness);
        }

        private void Check(bool condition, string what)
        {
            if (!condition)
                throw new ConformanceFailure($"{_poller.Capabilities.Name}: {what}\n  after: {string.Join("; ", _log)}");
        }

        public void Dispose()
        {
            _poller.Dispose();
            for (int t = 0; t < 3; t++)
            {
                if (_handles[t] is { } handle)
                    handle.Dispose();
                else if (_local[t] >= 0)
                    LibC.close(_local[t]);
                if (_peer[t] >= 0)
                    LibC.close(_peer[t]);
            }
        }
    }
}
