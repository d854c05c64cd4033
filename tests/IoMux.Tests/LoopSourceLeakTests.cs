using IoMux.Loop;
using NUnit.Framework;

namespace IoMux.Tests;

/// <summary>A source whose descriptor the poller refuses must not leave that descriptor open: the caller got an
/// exception, not a source, so nothing else would ever close it. select refuses descriptors at or above FD_SETSIZE
/// (1024), which is how the refusal is produced here.</summary>
public sealed class LoopSourceLeakTests
{
    [Test]
    public void AnInotifySourceThePollerRefusesClosesItsDescriptor()
    {
        var select = Models.ModelTargets.WithNative.Single(t => t.Name == "select");
        using var loop = LoopTests.NewLoop(select);
        var fillers = new List<FileStream>();
        try
        {
            // Push the lowest free descriptor past 1023 so that inotify_init1's is one select cannot hold.
            while (fillers.Count < 1100 && Directory.GetFiles("/proc/self/fd").Length < 1060)
                fillers.Add(new FileStream("/dev/null", FileMode.Open, FileAccess.Read));
            int before = Directory.GetFiles("/proc/self/fd").Length;
            Assert.Catch<Exception>(() => loop.AddInotify(Path.GetTempPath(), InotifyMask.Create, (_, _) => { }));
            Assert.That(Directory.GetFiles("/proc/self/fd").Length, Is.LessThanOrEqualTo(before), "the inotify descriptor was left open");
        }
        finally
        {
            foreach (var f in fillers)
                f.Dispose();
        }
    }
}
