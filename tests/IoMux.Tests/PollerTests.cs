namespace IoMux.Tests;

/// <summary>What the Poller adds on top of any backend, checked with a scripted backend that reports exactly
/// the events a test gives it.</summary>
public sealed class PollerTests
{
    /// <summary>A backend on the shared base class whose "kernel" is a script: each wait returns the next batch.</summary>
    private sealed class ScriptedBackend : PollerBackend
    {
        public readonly Dictionary<int, ulong> Tokens = new();
        public readonly Queue<Func<Dictionary<int, ulong>, PollEvent[]>> Script = new();
        public bool Disposed;
        private PollEvent[] _batch = [];

        public ScriptedBackend() : base(WaitLocking.None, probe: null) =>
            Capabilities = new() { Kind = BackendKind.Poll, Name = "scripted", TimeoutResolution = TimeSpan.FromMilliseconds(1), MaxDescriptor = int.MaxValue, NativePriority = true };

        private protected override void Watch(DescriptorEntry entry) => Tokens.Add(entry.Descriptor, entry.Token);
        private protected override void Rewatch(DescriptorEntry entry, ulong token, Interest interest, TriggerMode mode)
        {
            Table.Update(entry, token, interest, mode);
            Tokens[entry.Descriptor] = token;
        }
        private protected override void Unwatch(DescriptorEntry entry, Removal why) => Tokens.Remove(entry.Descriptor);
        private protected override string KernelCallName => "script";
        private protected override int KernelWait(int capacity, TimeSpan slice, out int errno)
        {
            errno = 0;
            _batch = Script.TryDequeue(out var next) ? next(Tokens) : [];
            return _batch.Length;
        }
        private protected override int Translate(int count, Span<PollEvent> events)
        {
            _batch.CopyTo(events);
            return count;
        }
        private protected override void WriteWake() { }
        private protected override void CloseKernel() => Disposed = true;
    }

    [Test]
    public void WaitPassesTheBackendsEventsThroughWithTheCallersTokens()
    {
        var backend = new ScriptedBackend();
        using var poller = new Poller(backend);
        poller.Register(10, 7, Interest.Readable);
        var second = poller.Register(11, 8, Interest.Writable);
        Assert.That(backend.Tokens[10], Is.EqualTo(7), "the backend sees the caller's token: its DescriptorTable does the stale checks");
        second.Modify(Interest.Readable);
        Assert.That(backend.Tokens[11], Is.EqualTo(8));
        backend.Script.Enqueue(tokens => [new PollEvent(tokens[11], Readiness.Readable)]);
        var events = new PollEvent[4];
        Assert.That(poller.Wait(events, TimeSpan.Zero), Is.EqualTo(1));
        Assert.That(events[0], Is.EqualTo(new PollEvent(8, Readiness.Readable)));
    }

    [Test]
    public void DisposeReleasesEveryRegistrationAndTheBackend()
    {
        var backend = new ScriptedBackend();
        var poller = new Poller(backend);
        var registrations = Enumerable.Range(0, 40).Select(i => poller.Register(1000 + i, (ulong)i, Interest.Readable)).ToList();
        Assert.That(poller.RegistrationCount, Is.EqualTo(40));
        poller.Dispose();
        Assert.That(backend.Disposed, Is.True);
        Assert.That(registrations.All(r => !r.IsActive), Is.True);
        Assert.That(poller.RegistrationCount, Is.EqualTo(0));
        registrations[0].Dispose(); // idempotent after the poller is gone
        poller.Dispose();
    }

    [Test]
    public void AFailedBackendAddLeavesNoRegistrationBehind()
    {
        var backend = new ScriptedBackend();
        using var poller = new Poller(backend);
        backend.Tokens.Add(5, 0); // the backend already knows fd 5: its Add throws
        Assert.Throws<ArgumentException>(() => poller.Register(5, 1, Interest.Readable));
        Assert.That(poller.RegistrationCount, Is.EqualTo(0));
        Assert.That(poller.Register(6, 1, Interest.Readable).IsActive, Is.True);
    }

    [Test]
    public void SafeHandleRegistrationsRefuseClosedHandles()
    {
        using var poller = new Poller(new ScriptedBackend());
        var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(12345, ownsHandle: false);
        handle.Dispose();
        Assert.Throws<ObjectDisposedException>(() => poller.Register(handle, 1, Interest.Readable));
        Assert.Throws<ArgumentException>(() => poller.Register(new Microsoft.Win32.SafeHandles.SafeFileHandle(-1, false), 1, Interest.Readable));
    }
}
