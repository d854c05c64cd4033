using System.Net;
using System.Net.Sockets;
using CsCheck;
using IoMux.Conformance;
using IoMux.Interop;

namespace IoMux.Tests;

/// <summary>
/// Differential, property-based tests of the contract: CsCheck generates sequences of operations (register with any
/// interest and mode, modify, deregister, peer writes, partial reads and drains through the registration's
/// helpers, peer shutdown or close, waits), runs each against every backend and model profile, and an executable
/// reference model of docs/SEMANTICS.md (<see cref="ContractModel"/>) predicts every wait: what each registration must
/// report, what it may report (the allowances D and E), what it must not. A mismatch shrinks to a minimal sequence
/// (printed with its seed) to be kept as a named scenario. CI runs 300 sequences per backend (a random seed each run,
/// printed on failure); <c>IOMUX_PROPERTY_ITERATIONS</c>, <c>IOMUX_PROPERTY_SECONDS</c> (per backend) and
/// <c>IOMUX_PROPERTY_SEED</c> run longer campaigns or replay one.
/// </summary>
[TestFixtureSource(nameof(Backends))]
public sealed class ContractPropertyTests(BackendProvider backend)
{
    public static IEnumerable<TestFixtureData> Backends =>
        Models.ModelTargets.WithNative.Select(t => new TestFixtureData(t).SetArgDisplayNames(t.Name));

    private static long Iterations => long.TryParse(Environment.GetEnvironmentVariable("IOMUX_PROPERTY_ITERATIONS"), out var n) ? n : 300;

    /// <summary>A campaign by time instead of count (seconds per backend), for long runs.</summary>
    private static int Seconds => int.TryParse(Environment.GetEnvironmentVariable("IOMUX_PROPERTY_SECONDS"), out var s) ? s : -1;

    [OneTimeSetUp]
    public void Supported()
    {
        if (backend.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
    }

    [Test, CancelAfter(300_000)]
    public void EveryWaitMatchesTheReferenceModel()
    {
        var seed = Environment.GetEnvironmentVariable("IOMUX_PROPERTY_SEED");
        long sequences = 0, operations = 0, waits = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Generators.Sequence.Sample(ops =>
        {
            using var run = new Run(backend);
            run.Execute(ops);
            sequences++;
            operations += ops.Length;
            waits += ops.Count(o => o.Kind == OpKind.Wait);
        }, seed: seed, iter: Seconds > 0 ? -1 : Iterations, time: Seconds, threads: 1, print: Generators.Print);
        TestContext.Out.WriteLine($"{backend.Name}: {sequences} sequences, {operations} operations, {waits} waits checked against the model in {clock.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>A shrunk mismatch becomes a named sequence here (and a scenario in the conformance suite).</summary>
    [TestCaseSource(nameof(Regressions))]
    public void Regression(string name, Op[] ops)
    {
        using var run = new Run(backend);
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
    }

    public enum OpKind { Register, Modify, Deregister, PeerWrite, ReadSome, Drain, PeerShutdown, Wait }

    /// <summary>One step: an operation on object <paramref name="Target"/> (0: AF_UNIX pair, 1: pipe, 2: TCP pair).</summary>
    public readonly record struct Op(OpKind Kind, int Target = 0, Interest Interest = Interest.Readable, TriggerMode Mode = TriggerMode.Level, int Amount = 1)
    {
        public override string ToString() => Kind switch
        {
            OpKind.Register or OpKind.Modify => $"{Kind}({Name(Target)}, {Interest}, {Mode})",
            OpKind.PeerWrite or OpKind.ReadSome => $"{Kind}({Name(Target)}, {Amount})",
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
                    (3, Gen.Select(target == 1 ? PipeInterest : SocketInterest, Mode, (i, m) => new Op(OpKind.Register, target, i, m))),
                    (2, Gen.Select(target == 1 ? PipeInterest : SocketInterest, Mode, (i, m) => new Op(OpKind.Modify, target, i, m))),
                    (1, Gen.Const(new Op(OpKind.Deregister, target))),
                    (4, Gen.Int[1, 2000].Select(n => new Op(OpKind.PeerWrite, target, Amount: n))),
                    (3, Gen.Int[1, 300].Select(n => new Op(OpKind.ReadSome, target, Amount: n))),
                    (2, Gen.Const(new Op(OpKind.Drain, target))),
                    (1, Gen.Const(new Op(OpKind.PeerShutdown, target))),
                    (6, Gen.Const(new Op(OpKind.Wait, target)))));

        public static readonly Gen<Op[]> Sequence = Step.Array[1, 30];

        public static string Print(Op[] ops) => string.Join("; ", ops);
    }

    /// <summary>What docs/SEMANTICS.md says one registered object must, may and must not report.</summary>
    private sealed class ContractModel
    {
        public bool IsPipe, Registered, Fired;
        public long Buffered;
        public bool PeerShut;
        public Interest Interest;
        public TriggerMode Mode;
        public ulong Token;
        // Edge mode, per direction (Readable, Writable): an event is owed (must come); the direction is armed on
        // every backend (registered, modified, or re-armed by would-block since its last report); readiness arrived
        // since the last report (native edge re-fires on it: allowance E).
        public Interest Owed, Armed, ArrivedSinceReport;

        private bool ReadReady => Buffered > 0 || PeerShut;
        private bool WriteReady => !IsPipe; // the peer never fills our socket's buffer in these sequences

        private Interest Ready => (ReadReady ? Interest.Readable : 0) | (WriteReady ? Interest.Writable : 0);

        public void OnRegisteredOrModified(Interest interest, TriggerMode mode, ulong token)
        {
            Interest = interest & (Interest.Readable | Interest.Writable);
            Mode = mode;
            Token = token;
            Registered = true;
            Fired = false;
            Armed = Interest;
            Owed = Interest & Ready; // an edge registration reports what is ready when it is made
            ArrivedSinceReport = Interest & Ready;
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
            var hangupFlags = Readiness.None;
            if (PeerShut && (Interest & Interest.Readable) != 0)
                hangupFlags |= Readiness.ReadHangup | (IsPipe ? Readiness.Hangup : 0);
            var allowed = (Readiness)ready | hangupFlags;
            switch (Mode)
            {
                case TriggerMode.Level:
                {
                    var required = (Readiness)ready;
                    // Allowance D: a derived hangup shows once the data is drained; with nothing buffered it must show.
                    if (Buffered == 0)
                        required |= hangupFlags;
                    return (required, allowed);
                }
                case TriggerMode.Oneshot:
                    return Fired ? (0, 0) : ((Readiness)ready, allowed);
                default:
                {
                    var required = (Readiness)(Owed & Ready);
                    var mayRepeat = (Armed | ArrivedSinceReport) & ready;
                    // epoll reports the whole current mask with any edge, so a ready direction may ride along
                    // with another's event (allowance E); a quiet registration must stay quiet.
                    return (required, (Readiness)mayRepeat | hangupFlags | (Readiness)ready);
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

        public bool IsQuietEdge(Readiness readiness) =>
            Mode == TriggerMode.Edge && ((Interest)(readiness & (Readiness.Readable | Readiness.Writable)) & (Armed | ArrivedSinceReport | Owed)) == 0;
    }

    /// <summary>One sequence against one backend: three objects, a poller, the model beside them.</summary>
    private sealed unsafe class Run : IDisposable
    {
        private readonly Poller _poller;
        private readonly int[] _local = new int[3], _peer = new int[3];
        private readonly ContractModel[] _model = [new(), new() { IsPipe = true }, new()];
        private readonly Registration?[] _registrations = new Registration?[3];
        private readonly PollEvent[] _events = new PollEvent[16];
        private readonly List<string> _log = [];
        private ulong _nextToken = 1;

        public Run(BackendProvider backend)
        {
            _poller = new Poller(backend.Create());
            int* fds = stackalloc int[2];
            if (LibC.socketpair(1, Platform.IsIllumos ? 2 : 1, 0, fds) != 0)
                throw Errno.Fail("socketpair");
            (_local[0], _peer[0]) = (fds[0], fds[1]);
            LibC.CreateNonBlockingPipe(out _local[1], out _peer[1]);
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(1);
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            client.Connect(listener.LocalEndPoint!);
            var server = listener.Accept();
            client.NoDelay = server.NoDelay = true;
            _local[2] = LibC.dup((int)client.Handle);
            _peer[2] = LibC.dup((int)server.Handle);
            client.Dispose();
            server.Dispose();
            foreach (var fd in _local.Concat(_peer))
                LibC.SetNonBlockingCloseOnExec(fd);
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
                    _registrations[t] = _poller.Register(_local[t], _nextToken, op.Interest, op.Mode);
                    m.OnRegisteredOrModified(op.Interest, op.Mode, _nextToken++);
                    break;
                case OpKind.Modify when m.Registered:
                    _registrations[t]!.Modify(op.Interest, op.Mode);
                    m.OnRegisteredOrModified(op.Interest, op.Mode, m.Token);
                    break;
                case OpKind.Deregister when m.Registered:
                    _registrations[t]!.Dispose();
                    _registrations[t] = null;
                    m.Registered = false;
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
                case OpKind.Wait:
                    Wait();
                    break;
            }
        }

        private IoOutcome ReadOnce(int t, int amount)
        {
            var m = _model[t];
            var buffer = new byte[amount];
            IoOutcome outcome;
            int n;
            if (_registrations[t] is { } registration)
            {
                outcome = registration.TryRead(buffer, out n);
            }
            else
            {
                fixed (byte* p = buffer)
                {
                    nint r = LibC.read(_local[t], p, (nuint)amount);
                    n = (int)Math.Max(r, 0);
                    outcome = r > 0 ? IoOutcome.Completed : r == 0 ? IoOutcome.EndOfStream : IoOutcome.WouldBlock;
                }
            }
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
            else
            {
                Check(m.Buffered == 0 && m.PeerShut, $"end of stream with {m.Buffered} buffered, peer shut {m.PeerShut}");
            }
            return outcome;
        }

        private void Wait()
        {
            var predictions = _model.Select(m => m.Predict()).ToArray();
            bool anyRequired = predictions.Any(p => p.Required != 0);
            int count = _poller.Wait(_events, anyRequired ? TimeSpan.FromMilliseconds(200) : TimeSpan.Zero);
            var seen = new Dictionary<ulong, Readiness>();
            for (int i = 0; i < count; i++)
            {
                var e = _events[i];
                Check(seen.TryAdd(e.Token, e.Readiness), $"two events for token {e.Token} in one wait");
                int t = Array.FindIndex(_model, m => m.Registered && m.Token == e.Token);
                Check(t >= 0, $"an event for token {e.Token}, which is not registered (stale): {e.Readiness}");
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
            foreach (var fd in _local.Concat(_peer))
                if (fd >= 0)
                    LibC.close(fd);
        }
    }
}
