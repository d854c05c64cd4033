namespace IoMux.Tests;

/// <summary>What the Poller adds on top of any backend, checked with a scripted backend that reports exactly
/// the events a test gives it.</summary>
public sealed class PollerTests
{
    private sealed class ScriptedBackend : IPollerBackend
    {
        public readonly Dictionary<int, ulong> Tokens = new();
        public readonly Queue<Func<Dictionary<int, ulong>, PollEvent[]>> Script = new();
        public bool Disposed;

        public BackendCapabilities Capabilities { get; } = new(BackendKind.Poll, "scripted", false, false, false, TimeSpan.FromMilliseconds(1), int.MaxValue);
        public BackendCounters Counters { get; } = new();
        public void Add(int fd, ulong token, Interest interest, TriggerMode mode) => Tokens.Add(fd, token);
        public void Modify(int fd, ulong token, Interest interest, TriggerMode mode) => Tokens[fd] = token;
        public void Delete(int fd) => Tokens.Remove(fd);
        public void Rearm(int fd, Interest directions) { }
        public void Wake() { }
        public void Dispose() => Disposed = true;

        public int Wait(Span<PollEvent> events, TimeSpan timeout)
        {
            var batch = Script.Dequeue()(Tokens);
            batch.CopyTo(events);
            return batch.Length;
        }
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
